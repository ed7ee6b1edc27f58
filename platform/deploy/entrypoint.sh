#!/bin/sh
# One image, four roles: web (migrate, collect static files, gunicorn), worker (Celery), beat and kernels (the
# code cells' kernel manager); `manage CMD`
# runs a management command, and any other program in the image runs as given (`python manage.py check`, `sh`).
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift

# Gunicorn's workers and Celery's pool are several processes: prometheus-client adds their metrics up through
# files in one directory per container, emptied at start so counters of an earlier run never come back.
metrics_dir_fresh() {
  export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/shipshape-metrics}"
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
}

case "$role" in
  web)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput
    metrics_dir_fresh
    exec gunicorn config.wsgi:application --bind "0.0.0.0:${SHIPSHAPE_PORT:-8000}" \
      --workers "${SHIPSHAPE_WEB_WORKERS:-2}" --timeout 60 --graceful-timeout 10 "$@"
    ;;
  worker)
    # Queues taken in turn (labs/tasks.py): short labs, long labs, regrade previews. A dedicated short-only
    # worker: SHIPSHAPE_WORKER_QUEUES=celery.
    metrics_dir_fresh
    exec celery -A config worker --concurrency "${SHIPSHAPE_WORKER_CONCURRENCY:-2}" \
      --prefetch-multiplier 1 -Q "${SHIPSHAPE_WORKER_QUEUES:-celery,grading-long,regrades}" --loglevel INFO "$@"
    ;;
  beat)
    exec celery -A config beat --loglevel INFO --schedule "${SHIPSHAPE_DATA_DIR}/celerybeat-schedule" "$@"
    ;;
  kernels)
    exec python manage.py kernel_manager "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    if command -v "$role" >/dev/null 2>&1; then
      exec "$role" "$@"
    fi
    echo "unknown role '$role': use web, worker, beat, kernels, manage <command>, or a program in the image" >&2
    exit 2
    ;;
esac
