# shellcheck shell=bash
# OpenSSH helpers for openssh-login.sh and openssh-update.sh. Sourced after
# lib.sh, not executed. Needs root.

TEST_USER=mcr-ssh-test

# openssh_build REV CC BIN_DIR: sshd of Debian's REV (upstream + its whole
# series) built with CC into $MCR_WORK/build/openssh-REV-<cc> ('+' as '_'); reused when
# newer than CC (and than BIN_DIR/libmcr_rt.a for mcr-cc). Prints its path.
openssh_build() {
    local rev="$1" cc="$2" bin="$3" version="${1%%-*}" dir tree
    # No '+' in the path: OpenSSH's scp-uri test reads it as a URI, '+' a space.
    dir="$MCR_WORK/build/openssh-${rev//+/_}-$(basename "$cc")"
    if [ -x "$dir/sshd" ] && [ "$dir/sshd" -nt "$cc" ] \
        && { ! is_mcr_cc "$cc" || [ "$dir/sshd" -nt "$bin/libmcr_rt.a" ]; } \
        && [ "$(cat "$dir/.mcr-debian-revision" 2>/dev/null)" = "$rev" ]; then
        log "$dir/sshd is up to date"
    else
        tree="$MCR_WORK/src/.debian-trees/openssh-$rev"
        log "building openssh $rev (upstream $version + its series) with $cc"
        debian_tree openssh "$version" "$rev" "$tree"
        MCR_SRC="$tree" "$SERVERS_DIR/build.sh" openssh "$version" "$cc" "$dir" >/dev/null
        rm -rf "$tree"
        printf '%s\n' "$rev" >"$dir/.mcr-debian-revision"
    fi
    printf '%s\n' "$dir/sshd"
}

# openssh_users: the privsep user sshd and its chroot /run/sshd (as Debian
# ships them), the test user with key logins only ("*" is not a locked
# account, "!" is); each created when absent.
openssh_users() {
    if ! id sshd >/dev/null 2>&1; then
        log "creating the privilege separation user sshd"
        useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd
    fi
    mkdir -p /run/sshd
    chown root:root /run/sshd
    chmod 755 /run/sshd
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        log "creating the test user $TEST_USER"
        useradd --create-home --shell /bin/sh "$TEST_USER"
    fi
    usermod -p '*' "$TEST_USER"
}

# openssh_config RUN PORT: a host key, a user key (authorized for the test
# user) and RUN/sshd_config: Debian's, less PAM (not built), test paths,
# LogLevel DEBUG3 (the sandbox's attach is logged). Sets SSH to the client
# command (bounded connect and keep-alive) for RUN's user key and PORT.
openssh_config() {
    local run="$1" port="$2" home grp
    home="$(getent passwd "$TEST_USER" | cut -d: -f6)"
    grp="$(id -gn "$TEST_USER")"
    ssh-keygen -q -t ed25519 -N '' -C mcr-host -f "$run/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C mcr-user -f "$run/user_key"
    install -d -m 700 -o "$TEST_USER" -g "$grp" "$home/.ssh"
    install -m 600 -o "$TEST_USER" -g "$grp" "$run/user_key.pub" "$home/.ssh/authorized_keys"
    cat >"$run/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $run/host_ed25519
PidFile $run/sshd.pid
LogLevel DEBUG3
KbdInteractiveAuthentication no
PasswordAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
AllowUsers $TEST_USER
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
    SSH=(ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
        -o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o LogLevel=ERROR
        -i "$run/user_key" -p "$port" "$TEST_USER@127.0.0.1")
}

# descendants PID: its children, grandchildren, ... deepest first.
descendants() {
    local c
    for c in $(pgrep -P "$1" || true); do
        descendants "$c"
        printf '%s\n' "$c"
    done
}

# openssh_login_ok: a new login runs 'echo ok' (30 s bound); 0 when it
# answered "ok". Its stderr goes to $1 when given.
openssh_login_ok() {
    local out
    out="$(timeout 30 "${SSH[@]}" echo ok 2>"${1:-/dev/null}")" && [ "$out" = ok ]
}
