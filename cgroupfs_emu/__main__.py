import sys

from .cli.mount import main

sys.exit(main())
