"""The stream job as a file, for a streaming SparkApplication's ``mainApplicationFile``
(the image copies it to ``/opt/featurekube/stream.py``); does I/O.

It takes the arguments of :func:`featurekube.materialize.stream_job.main`.
"""

import sys

from featurekube.materialize.stream_job import main

if __name__ == "__main__":
    sys.exit(main())
