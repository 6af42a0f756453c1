#!/bin/sh
# The SecurePay image's entrypoint (also runnable outside a container: the tests do).
#
#   serve            check the settings (securepay config check), then gunicorn
#   migrate          securepay db upgrade (compose runs it once, before the app)
#   job NAME         one run of a timer's job, as deploy/securepay-NAME.service runs it:
#                    receipts, anchor, verify, reconcile, autopay, export
#   every N ARGS...  ARGS (a job, or a securepay command) every N seconds: compose's
#                    stand-in for the systemd timers; a failed run is logged, then retried
#   anything else    `securepay ARGS...` (for example: audit verify, calls list)
#
# Secrets as files: for each secret variable NAME, NAME_FILE may name a file holding it
# (compose and Kubernetes mount secrets as files under /run/secrets). The file's content
# is exported as NAME for the command, and NAME_FILE removed; setting both is an error.
set -eu

SECUREPAY_HOME="${SECUREPAY_HOME:-/opt/securepay}"

file_env() {
    name="$1"
    file_name="${name}_FILE"
    eval "value=\${$name:-}"
    eval "file=\${$file_name:-}"
    if [ -n "$file" ]; then
        if [ -n "$value" ]; then
            echo "securepay-entrypoint: both $name and $file_name are set: use one" >&2
            exit 2
        fi
        if [ ! -r "$file" ]; then
            echo "securepay-entrypoint: $file_name: cannot read $file" >&2
            exit 2
        fi
        value="$(cat "$file")"
        export "$name=$value"
        unset "$file_name"
    fi
}

for secret in SECUREPAY_PEPPER TWILIO_AUTH_TOKEN STRIPE_API_KEY SECUREPAY_PORTAL_TOKEN \
              SECUREPAY_DATABASE_URL SECUREPAY_SMTP_PASSWORD; do
    file_env "$secret"
done

ANCHORS="${SECUREPAY_AUDIT_ANCHOR_FILE:-/var/lib/securepay/anchors/securepay-anchors.jsonl}"
EXPORTS="${SECUREPAY_EXPORT_DIR:-/var/lib/securepay/exports}"

job() {
    case "${1:-}" in
        receipts)  securepay payments send-receipts ;;
        anchor)    securepay audit anchor --out "$ANCHORS" ;;
        verify)    securepay audit verify --anchor "$ANCHORS" ;;
        reconcile) securepay payments reconcile --since "$(date -u -d '3 days ago' +%F)" ;;
        autopay)   securepay autopay run ;;
        export)    securepay payments export --batch --out "$EXPORTS/payments-$(date -u +%Y%m%dT%H%M%SZ).csv" ;;
        *) echo "securepay-entrypoint: unknown job '${1:-}'" >&2; return 2 ;;
    esac
}

run() {
    if [ "$1" = job ]; then
        shift
        job "$@"
    else
        securepay "$@"
    fi
}

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
    serve)
        securepay config check --quiet
        exec gunicorn -c "$SECUREPAY_HOME/gunicorn.conf.py" "ivr:create_app()"
        ;;
    migrate)
        exec securepay db upgrade
        ;;
    job)
        job "$@"
        ;;
    every)
        interval="${1:?usage: every SECONDS COMMAND...}"
        shift
        trap 'exit 0' TERM INT
        while :; do
            run "$@" || echo "securepay-entrypoint: '$*' failed with status $?" >&2
            sleep "$interval" &
            wait $!
        done
        ;;
    *)
        exec securepay "$command" "$@"
        ;;
esac
