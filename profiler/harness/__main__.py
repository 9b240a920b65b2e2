import sys

from profiler.harness.supervisor import main

sys.exit(main())
