"""`python -m workloads.demo`: the platform's data path on one machine (see `workloads.demo.datapath`)."""

import sys

from workloads.demo.datapath import main

sys.exit(main())
