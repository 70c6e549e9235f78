# The controller and the load tester share one image: `fledge controller`, `fledge loadtester`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY apis apis
COPY canary canary
COPY metrics metrics
COPY routers routers
COPY notifiers notifiers
COPY loadtester loadtester
COPY redaction.py egress.py deadlines.py fairness.py resolving.py ./
COPY crds crds
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER 65532:65532
ENTRYPOINT ["fledge"]
