import sys
from pathlib import Path

# Tests import their shared strategies module by name; pytest's importlib mode does not put
# the test folder on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))
