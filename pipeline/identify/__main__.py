import sys

from pipeline.identify.cli import main

sys.exit(main())
