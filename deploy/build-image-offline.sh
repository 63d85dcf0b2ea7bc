#!/usr/bin/env bash
# Builds the dge-idp image from deploy/Dockerfile, unchanged, on a machine that cannot
# reach Docker Hub or gcr.io: the two base images the recipe names are made locally
# from Debian packages, then `podman build --pull=never` uses them.
#
#   sudo deploy/build-image-offline.sh            # from the repository root
#
# Needs: root, podman + buildah + debootstrap, and runc where cgroups are in hybrid
# mode (apt-get install podman buildah debootstrap runc), a Debian bookworm mirror (DEBIAN_MIRROR, default the one apt uses here),
# crates.io (cargo downloads the crates inside the build), and a Rust toolchain of the
# version in Cargo.toml (rust-version) installed with rustup on this machine: it is
# copied into the builder image instead of being downloaded.
#
# The local images only stand in for the official ones; on a machine with registry
# access, `podman build -f deploy/Dockerfile .` pulls the real ones instead.
#
# Environment:
#   DEBIAN_MIRROR  bookworm mirror            (default http://deb.debian.org/debian)
#   WORK           scratch folder for rootfs  (default /var/tmp/dge-image-build)
#   RUST_TOOLCHAIN rustup toolchain to copy   (default 1.95.0-x86_64-unknown-linux-gnu)
#   IMAGE          name of the built image    (default dge-idp)
#   REBUILD_BASES  1 to remake base images that already exist (default 0)
#   BUILD_CA_BUNDLE  a CA bundle on this machine to mount read-only over the builder's
#                  /etc/ssl/certs/ca-certificates.crt during the build, for a network
#                  where a TLS-inspecting proxy stands between cargo and crates.io
#                  (e.g. /etc/ssl/certs/ca-certificates.crt); nothing of it stays in
#                  any image. Default: none.
#   OCI_RUNTIME    runtime for the build's RUN step (default: runc where cgroups are
#                  in hybrid mode, which crun 1.8 refuses; podman's default elsewhere)
#   ULIMITS        rlimits of the build's RUN step, comma-separated (default
#                  nofile=16384:16384,nproc=16384:16384: podman's own defaults are
#                  above what a host without CAP_SYS_RESOURCE may grant)
set -euo pipefail

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${WORK:-/var/tmp/dge-image-build}
RUST_TOOLCHAIN=${RUST_TOOLCHAIN:-1.95.0-x86_64-unknown-linux-gnu}
RUSTUP_SRC=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_SRC=${CARGO_HOME:-$HOME/.cargo}
IMAGE=${IMAGE:-dge-idp}
REBUILD_BASES=${REBUILD_BASES:-0}
ULIMITS=${ULIMITS:-nofile=16384:16384,nproc=16384:16384}
if [ -z "${OCI_RUNTIME:-}" ] && [ -d /sys/fs/cgroup/unified ]; then
    # crun 1.8 refuses hybrid cgroups ("cgroups in hybrid mode not supported").
    command -v runc >/dev/null || { echo "cgroups are in hybrid mode here: install runc (apt-get install runc)" >&2; exit 1; }
    OCI_RUNTIME=runc
fi
RUST_IMAGE=docker.io/library/rust:1.95-bookworm
RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

repo=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '== %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and rootful podman)" >&2; exit 1; }
for tool in podman debootstrap dpkg-deb apt-get tar; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
toolchain_dir=$(readlink -f "$RUSTUP_SRC/toolchains/$RUST_TOOLCHAIN")
[ -x "$toolchain_dir/bin/rustc" ] || { echo "no toolchain at $toolchain_dir" >&2; exit 1; }
[ -x "$CARGO_SRC/bin/rustup" ] || { echo "no rustup at $CARGO_SRC/bin/rustup" >&2; exit 1; }
mkdir -p "$WORK"

have_image() { [ "$REBUILD_BASES" != 1 ] && podman image exists "$1"; }

# --- rust:1.95-bookworm: Debian bookworm + C toolchain + the host's rustup toolchain,
# laid out like the official image (RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo, both on PATH, rustup's proxies in cargo/bin).
if have_image "$RUST_IMAGE"; then
    log "$RUST_IMAGE exists (REBUILD_BASES=1 to remake it)"
else
    root="$WORK/rust-rootfs"
    rm -rf "$root"
    log "debootstrap bookworm (minbase + build tools) from $DEBIAN_MIRROR"
    debootstrap --variant=minbase \
        --include=build-essential,pkg-config,ca-certificates,git,curl \
        bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log"
    log "copy $RUST_TOOLCHAIN from $toolchain_dir (without its HTML docs)"
    mkdir -p "$root/usr/local/rustup/toolchains/$RUST_TOOLCHAIN" "$root/usr/local/cargo/bin"
    tar -C "$toolchain_dir" --exclude=./share/doc -cf - . |
        tar -C "$root/usr/local/rustup/toolchains/$RUST_TOOLCHAIN" -xf -
    cat >"$root/usr/local/rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$RUST_TOOLCHAIN"
profile = "minimal"
auto_self_update = "disable"

[overrides]
EOF
    install -m 0755 "$CARGO_SRC/bin/rustup" "$root/usr/local/cargo/bin/rustup"
    for proxy in cargo rustc rustdoc rust-gdb rust-gdbgui rust-lldb cargo-clippy clippy-driver cargo-fmt rustfmt; do
        ln -sf rustup "$root/usr/local/cargo/bin/$proxy"
    done
    chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    log "import $RUST_IMAGE"
    tar -C "$root" --numeric-owner -cf "$WORK/rust-rootfs.tar" .
    podman import \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "ENV RUST_VERSION=$("$toolchain_dir/bin/rustc" --version | cut -d' ' -f2)" \
        --change 'CMD ["/bin/bash"]' \
        "$WORK/rust-rootfs.tar" "$RUST_IMAGE" >/dev/null
    rm -rf "$root" "$WORK/rust-rootfs.tar"
fi

# --- distroless/cc-debian12:nonroot: the files of the packages distroless "cc" holds,
# unpacked without dpkg (no shell, no package manager), users root/nobody/nonroot.
if have_image "$RUNTIME_IMAGE"; then
    log "$RUNTIME_IMAGE exists (REBUILD_BASES=1 to remake it)"
else
    root="$WORK/cc-rootfs"
    debs="$WORK/cc-debs"
    rm -rf "$root" "$debs"
    mkdir -p "$root" "$debs"
    packages="base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1 libstdc++6"
    log "download $packages"
    # A private apt state that sees only the bookworm mirror, so the host's apt
    # configuration (other sources, pins) does not decide the versions.
    apt_state="$WORK/apt"
    mkdir -p "$apt_state/lists/partial" "$apt_state/cache/archives/partial" "$apt_state/etc/preferences.d"
    echo "deb $DEBIAN_MIRROR bookworm main" >"$apt_state/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_state/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::Etc::Preferences=$apt_state/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt_state/etc/preferences.d"
        -o "Dir::State::Lists=$apt_state/lists" -o "Dir::Cache=$apt_state/cache"
        -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
    apt-get -q "${apt_opts[@]}" update >/dev/null
    (cd "$debs" && apt-get -q "${apt_opts[@]}" download $packages >/dev/null)
    mkdir -p "$root/var/lib/dpkg/status.d"
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$root"
        # Control data where image scanners look for it in distroless images.
        dpkg-deb -f "$deb" >"$root/var/lib/dpkg/status.d/$(dpkg-deb -f "$deb" Package)"
    done
    # ca-certificates only ships the certificates; its maintainer script, which does
    # not run here, would make the bundle that rustls-native-certs and OpenSSL read.
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
    # No shell, no package manager, no documentation.
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/lintian" \
        "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
tty:x:5:
staff:x:50:
nobody:x:65534:
nonroot:x:65532:
EOF
    echo "hosts: files dns" >"$root/etc/nsswitch.conf"
    mkdir -p "$root/tmp" "$root/root" "$root/home/nonroot"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root" "$root/home/nonroot"
    chown 65532:65532 "$root/home/nonroot"
    log "import $RUNTIME_IMAGE"
    tar -C "$root" --numeric-owner -cf "$WORK/cc-rootfs.tar" .
    podman import \
        --change 'USER 65532' \
        --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        "$WORK/cc-rootfs.tar" "$RUNTIME_IMAGE" >/dev/null
    rm -rf "$root" "$debs" "$WORK/cc-rootfs.tar"
fi

# --- the image itself, from the recipe as it is.
log "podman build -f deploy/Dockerfile -t $IMAGE (crates from crates.io)"
start=$(date +%s)
build_opts=(--pull=never)
[ -n "${OCI_RUNTIME:-}" ] && build_opts+=(--runtime "$OCI_RUNTIME")
if [ -n "${BUILD_CA_BUNDLE:-}" ]; then
    build_opts+=(--volume "$(readlink -f "$BUILD_CA_BUNDLE"):/etc/ssl/certs/ca-certificates.crt:ro")
fi
IFS=, read -ra limits <<<"$ULIMITS"
for limit in "${limits[@]}"; do build_opts+=(--ulimit "$limit"); done
podman build "${build_opts[@]}" -f "$repo/deploy/Dockerfile" -t "$IMAGE" "$repo"
log "built $IMAGE in $(($(date +%s) - start)) s"
podman images "$IMAGE"
