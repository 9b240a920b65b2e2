import pytest

from profiler.config import ConfigError, load_target, parse_size_mb


def write(tmp_path, text):
    path = tmp_path / "device.env"
    path.write_text(text)
    return str(path)


def test_env_template_parses_with_documented_defaults():
    from tests.conftest import ROOT

    target = load_target(f"{ROOT}/env.template", host_cores=[0, 1])
    assert target.name == "raspberry-pi-5"
    assert (target.cpus, target.threads, target.memory_mb, target.swap_mb) == (1.0, 1, 1024.0, 0.0)
    assert (target.warmup, target.iterations, target.batch, target.backend) == (10, 100, 1, "auto")
    assert target.warnings == []


def test_threads_default_to_ceil_of_fractional_cpus(tmp_path):
    target = load_target(write(tmp_path, "CPUS=1.5\nMEMORY=512m\n"), host_cores=[0, 1])
    assert target.cpus == 1.5 and target.threads == 2 and target.memory_mb == 512


def test_auptimizer_aliases(tmp_path):
    target = load_target(write(tmp_path, "DOCKCPUS=2\nDOCKMEMORY=2g\n"), host_cores=[0, 1])
    assert (target.cpus, target.memory_mb) == (2.0, 2048.0)
    args = load_target(write(tmp_path, 'DOCKER_ARGS="--cpus=1 --memory 768m --cpuset-cpus 1 --privileged"\n'),
                       host_cores=[0, 1])
    assert (args.cpus, args.memory_mb, args.cpu_set) == (1.0, 768.0, [1])
    assert any("--privileged" in w for w in args.warnings)


def test_command_line_overrides_the_file(tmp_path):
    target = load_target(write(tmp_path, "CPUS=1\nITERATIONS=100\n"), {"CPUS": "2", "ITERATIONS": "7"}, host_cores=[0, 1])
    assert (target.cpus, target.iterations, target.threads) == (2.0, 7, 2)


@pytest.mark.parametrize("line, key", [("CPUS=0", "CPUS"), ("CPUS=-1", "CPUS"), ("MEMORY=lots", "MEMORY"),
                                       ("ITERATIONS=-5", "ITERATIONS"), ("THREADS=two", "THREADS"),
                                       ("BACKEND=podman", "BACKEND"), ("CPU_SET=a-b", "CPU_SET"),
                                       ("INPUT_SHAPES=input=1x3", "INPUT_SHAPES")] + [(line, line.split("=")[0]) for line in (
                                           "CPUS=0.001", "CPUS=1e-9", "TIMEOUT_S=1e308", "MEMORY=99999999999999999t",
                                           "SEED=-1", "CPU_SET=0-1000000000", "CPU_SET=0-", "THREADS=600",
                                           "DOCKER_ARGS=\"--cpus '1\"")])
def test_invalid_values_name_their_key(tmp_path, line, key):
    with pytest.raises(ConfigError) as info:
        load_target(write(tmp_path, line + "\n"), host_cores=[0, 1])
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message


def test_unknown_key_is_a_warning(tmp_path):
    target = load_target(write(tmp_path, "CPUS=1\nCPUZ=2\n"), host_cores=[0, 1])
    assert any("CPUZ" in w for w in target.warnings)


def test_a_line_that_is_not_key_value_names_its_line(tmp_path):
    path = write(tmp_path, "CPUS=1\n# a comment\nMEMORY 512m\n")
    with pytest.raises(ConfigError) as info:
        load_target(path, host_cores=[0, 1])
    assert str(info.value) == f"{path}:3: cannot read 'MEMORY 512m'; expected KEY=VALUE"


def test_more_cpus_than_the_host_has_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="only 2 usable cores"):
        load_target(write(tmp_path, "CPUS=4\n"), host_cores=[0, 1])


def test_sizes():
    assert parse_size_mb("MEMORY", "2g") == 2048
    assert parse_size_mb("MEMORY", "1.5G") == 1536
    assert parse_size_mb("MEMORY", "1024k") == 1
    assert parse_size_mb("MEMORY", "1048576") == 1


BAD_ENV = ["CPUS=0.001", "CPUS=1e-9", "TIMEOUT_S=1e308", "MEMORY=99999999999999999t", "SEED=-1",
           "CPU_SET=0-1000000000", "CPU_SET=0-", "THREADS=600", "DOCKER_ARGS=\"--cpus '1\""]


@pytest.mark.parametrize("line", BAD_ENV)
def test_env_values_that_could_never_run_are_one_line_before_any_work(tmp_path, line):
    import time

    from tests.conftest import example, run_cli

    started = time.monotonic()
    done = run_cli("profile", "--env", write(tmp_path, line + "\n"), "--no-store", example("tiny_cnn.onnx"),
                   timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("profile: error: " + line.split("=")[0]), done.stderr
    assert time.monotonic() - started < 30  # refused, not built: no core set of 10⁹ integers, no run


def test_one_list_of_settings_makes_the_env_keys_the_options_and_the_api_keywords():
    from profiler import cli, config, pipeline

    parser = cli.build_parser()
    assert config.KEYS <= {action.dest for action in parser._actions}
    assert set(pipeline.OVERRIDE_KEYS) == config.KEYS == {key for key, _, _ in config.SETTINGS}
    opts = parser.parse_args(["m.onnx", "--sample-memory", "1", "--ssh-connect-timeout", "5"])
    settings = {key.lower(): getattr(opts, key) for key in pipeline.OVERRIDE_KEYS}
    target = config.TargetDevice.from_env(None, **settings)
    assert target.sample_memory is True and target.ssh_connect_timeout_s == 5
