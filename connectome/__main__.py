import sys

from connectome.cli import main

sys.exit(main())
