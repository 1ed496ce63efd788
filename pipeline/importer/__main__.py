import sys

from pipeline.importer.cli import main

sys.exit(main())
