"""``python -m producer.gateway --host 127.0.0.1 --port 8000``."""

import sys

from producer.gateway.serve import main

if __name__ == "__main__":
    sys.exit(main())
