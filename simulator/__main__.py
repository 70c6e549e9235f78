"""Run the traffic simulator: ``python -m simulator --kubeconfig PATH --listen 127.0.0.1:0``."""

from simulator import cli

raise SystemExit(cli.main())
