"""The materialization job as a file, for a SparkApplication's ``mainApplicationFile``
(the image copies it to ``/opt/featurekube/materialize.py``); does I/O.

It takes the arguments of :mod:`featurekube.materialize.__main__`.
"""

import sys

from featurekube.materialize.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
