"""bmad-api container entrypoint: ``python bmad_api.py [--config FILE] [--port N] ...``"""

import sys

from bmad.cli import main

if __name__ == "__main__":
    sys.exit(main())
