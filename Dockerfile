# One image for every role of the runtime; the command picks the role:
#   worker   celery -A workers worker --loglevel INFO          (the default)
#   beat     celery -A workers beat --schedule /tmp/celerybeat-schedule
#   Flower   celery -A workers flower --address=0.0.0.0 --port=5555   (FLOWER_BASIC_AUTH)
#   gateway  python -m producer.gateway --host 0.0.0.0 --port 8000    (FENCE_API_TOKENS)
#   setup    python -m fence.memory.aws_setup dynamodb --table agent-memory
# Configuration is FENCE_* environment variables (see .env.example and README).
# Extras: api (the gateway) and openai (fence.models.openai). Your own agents: a
# derived image or a mounted module plus FENCE_AGENTS (ops/README.md, "Your own agents").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 fence \
    && useradd --system --uid 10001 --gid fence --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin fence

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p fence workers producer \
    && touch fence/__init__.py workers/__init__.py producer/__init__.py \
    && pip install ".[api,client,openai]" \
    && pip uninstall --yes fence \
    && rm -rf fence workers producer build *.egg-info

COPY fence ./fence
COPY workers ./workers
COPY producer ./producer
RUN pip install --no-deps ".[api,client,openai]" && rm -rf build *.egg-info

USER fence:fence
EXPOSE 8000 5555 9808
# Celery's warm shutdown: SIGTERM stops taking turns and lets running turns finish.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "workers", "worker", "--loglevel", "INFO"]
