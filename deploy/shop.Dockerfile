# syntax=docker/dockerfile:1
# The demo shop (examples/shop.py) as an image, for the compose stack and the Kubernetes example.
# Build from the repository root:  docker build -f deploy/shop.Dockerfile -t peeka-demo-shop:dev .
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim-bookworm
COPY examples/shop.py /app/shop.py
USER 10001:10001
ENTRYPOINT ["python", "/app/shop.py"]
CMD ["8080"]
