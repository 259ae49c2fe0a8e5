#!/bin/sh
# is-vm-in-maint.sh: log an upcoming maintenance of this VM to syslog, once per event.
#
# The 2015 In-VM Metadata Service sample (yahavb/AzureComputeInVmNotification,
# samples/IsVmInMaint.sh), made correct. The sample ran from cron and did
#
#     result=`curl http://169.254.169.254/metadata/v1/maintenance | grep -i EventID`
#     if [ -n $result ]; then logger Incoming VM reboot; fi
#
# Unquoted, `[ -n $result ]` is `[ -n ]` when nothing is pending: a one-argument test
# of the non-empty string "-n", always true, so it logged on every run. With an event
# pending, the JSON line splits into several words and `[` fails (bash: "too many
# arguments", dash: "unexpected operator"), so it did NOT log the one time it should.
# This script quotes the test, extracts the EventID itself, and remembers the EventIDs
# it has logged, so each event gives ONE line however often cron runs it.
#
# Run it every minute from cron (the 2015 API shows an event from 5 minutes before it
# starts):  * * * * * /usr/local/sbin/is-vm-in-maint.sh
#
# Environment (all optional):
#   METADATA_URL       metadata service            (default http://169.254.169.254)
#   SYSLOG_SERVER      send to this host over UDP  (default: the local syslog, /dev/log)
#   SYSLOG_PORT        its port                    (default 514)
#   SYSLOG_TAG         the syslog tag              (default vm-maintenance)
#   SYSLOG_PRIORITY    facility.severity           (default user.notice)
#   MAINT_STATE_FILE   EventIDs already logged     (default /var/lib/is-vm-in-maint/<VM>.ids)
#
# Exit status: 0 when nothing is pending or the event is logged (now or before),
# 1 when the metadata service does not answer or logger fails (cron mails the message).

set -u

METADATA_URL=${METADATA_URL:-http://169.254.169.254}
SYSLOG_SERVER=${SYSLOG_SERVER:-}
SYSLOG_PORT=${SYSLOG_PORT:-514}
SYSLOG_TAG=${SYSLOG_TAG:-vm-maintenance}
SYSLOG_PRIORITY=${SYSLOG_PRIORITY:-user.notice}

# The JSON string value of key $1 in document $2; the 2015 API writes "/" as "\/".
json_field() {
    printf '%s\n' "$2" | sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | sed 's,\\/,/,g'
}

# --noproxy: the metadata service must be reached directly, never through a proxy.
if ! maintenance=$(curl -s -f --noproxy '*' --max-time 5 "$METADATA_URL/metadata/v1/maintenance"); then
    echo "is-vm-in-maint: no answer from $METADATA_URL/metadata/v1/maintenance" >&2
    exit 1
fi

eventid=$(json_field EventID "$maintenance")
if [ -n "$eventid" ]; then
    info=$(curl -s -f --noproxy '*' --max-time 5 "$METADATA_URL/metadata/v1/InstanceInfo") || info=
    vm=$(json_field ID "$info")
    vm=${vm:-unknown}
    created=$(json_field EventCreationTime "$maintenance")

    safe_vm=$(printf '%s' "$vm" | tr -c 'A-Za-z0-9._-' '_')
    state=${MAINT_STATE_FILE:-/var/lib/is-vm-in-maint/$safe_vm.ids}
    mkdir -p "$(dirname "$state")" || exit 1
    touch "$state" || exit 1

    # One line per EventID: if two runs overlap, the lock makes the second wait and then
    # find the id recorded by the first.
    exec 9>>"$state"
    if command -v flock >/dev/null 2>&1; then
        flock -w 10 9 || exit 1
    fi
    if grep -qxF "$eventid" "$state"; then
        exit 0
    fi

    message="Incoming VM maintenance (reboot): VM $vm EventID $eventid created ${created:-unknown}"
    if [ -n "$SYSLOG_SERVER" ]; then
        logger -n "$SYSLOG_SERVER" -P "$SYSLOG_PORT" -d --id=$$ -t "$SYSLOG_TAG" -p "$SYSLOG_PRIORITY" \
            -- "$message" || exit 1
    else
        logger --id=$$ -t "$SYSLOG_TAG" -p "$SYSLOG_PRIORITY" -- "$message" || exit 1
    fi
    printf '%s\n' "$eventid" >&9
fi
exit 0
