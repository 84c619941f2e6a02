# shellcheck shell=bash
# Shared shell helpers for the scripts in bin/. Source it; it defines functions and BATON_REPO_ROOT
# and changes nothing else. Messages go to stderr so that commands whose stdout is meant to be
# eval'ed (`bin/broker env`) stay clean.

# The repository root: bin/lib/.. /..; resolved once so scripts work from any working directory.
# shellcheck disable=SC2034 # used by the scripts that source this file
BATON_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    _baton_bold=$'\e[1m' _baton_red=$'\e[31m' _baton_green=$'\e[32m' _baton_yellow=$'\e[33m' _baton_reset=$'\e[0m'
else
    _baton_bold='' _baton_red='' _baton_green='' _baton_yellow='' _baton_reset=''
fi

info() { printf '%s\n' "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_baton_yellow" "$_baton_reset" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$_baton_red" "$_baton_reset" "$*" >&2
    exit 1
}
# A section header, so a long log (CI) can be scanned by eye.
section() { printf '\n%s==> %s%s\n' "$_baton_bold" "$*" "$_baton_reset" >&2; }
ok_line() { printf '%s%s%s\n' "$_baton_green" "$*" "$_baton_reset" >&2; }
fail_line() { printf '%s%s%s\n' "$_baton_red" "$*" "$_baton_reset" >&2; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# apt_install PACKAGE...: installs Debian packages when we are root, else says exactly what to run.
# Refreshes the package lists once if the first attempt fails (a fresh machine often has none).
apt_install() {
    if ! is_root; then
        die "missing packages: $*; run as root: apt-get install -y $* (or: sudo apt-get install -y $*)"
    fi
    command -v apt-get >/dev/null || die "missing packages: $*; this is not a Debian-like system, install them with your package manager"
    info "installing: $* (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" </dev/null; then
        info "apt-get install failed; refreshing the package lists and trying again"
        apt-get update </dev/null || die "apt-get update failed; check the network and /etc/apt/sources.list"
        apt-get install -y --no-install-recommends "$@" </dev/null || die "apt-get install -y $* failed (see above)"
    fi
}

# port_in_use PORT: true when something listens on PORT (any address) or answers on 127.0.0.1.
port_in_use() {
    local port="$1"
    if command -v ss >/dev/null && [[ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ]]; then
        return 0
    fi
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
}

# port_owner PORT: a one-line description of who listens on PORT, for error messages.
port_owner() {
    local port="$1"
    if command -v ss >/dev/null; then
        ss -Htlnp "sport = :$port" 2>/dev/null | awk '{print $4, $6}' | head -n 1
    fi
}

# wait_for_port PORT SECONDS: polls until 127.0.0.1:PORT accepts connections.
wait_for_port() {
    local port="$1" deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# random_alnum LENGTH: a random string of [A-Za-z0-9], safe in URLs without encoding.
random_alnum() {
    local length="$1" out=''
    while ((${#out} < length)); do
        out+="$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9')"
    done
    printf '%s' "${out:0:length}"
}
