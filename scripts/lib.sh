# Shared by scripts/demo and scripts/test: install what is missing, nothing else.

# ensure_packages PKG…: apt-get install the Debian packages that are not installed yet.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
            [ -x "$d/swift" ] && export PATH="$d:$PATH" && break
        done
    fi
    command -v swift >/dev/null 2>&1 || {
        echo "swift is not installed: install the Swift 6 toolchain for Debian 12 from swift.org first" >&2
        exit 1
    }
}

# ensure_test_venv: Python test peers from PyPI, pinned, in .venv-test (not the system's
# Python); exports NMBRIDGE_TEST_PYTHON for the tests.
ensure_test_venv() {
    local venv=.venv-test requirements=Tests/Peers/requirements.txt
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.installed"; then
        echo "==> installing Python test peers into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/requirements.installed"
    fi
    NMBRIDGE_TEST_PYTHON="$PWD/$venv/bin/python"
    export NMBRIDGE_TEST_PYTHON
}
