import sys

from directconv.cli.main import main

sys.exit(main())
