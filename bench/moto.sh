# shellcheck shell=bash
# Sourced after bench/lib.sh: moto's S3 server on a free loopback port,
# stopped on exit, from the emulators' cached install (~/.cache/sluice-emulators,
# or SLUICE_EMULATORS_DIR; scripts/install-emulators.sh installs it if
# missing). Any access key and secret are accepted. Sets MOTO_ENDPOINT and
# MOTO_PID; make_bucket NAME creates a bucket.
MOTO_VENV="${SLUICE_EMULATORS_DIR:-$HOME/.cache/sluice-emulators}/moto-venv"
[ -e "$MOTO_VENV/.installed" ] || bash scripts/install-emulators.sh >/dev/null
MOTO_PORT=$(free_port)
"$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
track_pid "$MOTO_PID"
MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
wait_for_port "$MOTO_PORT"
make_bucket() {
  "$MOTO_VENV/bin/python" -c "import sys, boto3
boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='a',
             aws_secret_access_key='b').create_bucket(Bucket=sys.argv[2])" "$MOTO_ENDPOINT" "$1"
}
