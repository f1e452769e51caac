import sys

from lotus_unlearn.cli import main

sys.exit(main())
