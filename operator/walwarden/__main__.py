import sys

from walwarden.cli import main

sys.exit(main())
