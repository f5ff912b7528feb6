#!/bin/sh
# Builds the meshlens container image FROM scratch with buildah (make image),
# then checks it: runs `meshlens --version` in it with podman, as the image's
# unprivileged user, every capability dropped.
#
#   deploy/container/build.sh [IMAGE]     default IMAGE: localhost/meshlens:$VERSION
#
# Needs Go, buildah and podman (Debian: apt-get install buildah podman).
# SKIP_RUN=1 builds without running the check (no podman).
set -eu
cd "$(dirname "$0")/../.."
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
ARCH=${ARCH:-$($GO env GOARCH)}
IMAGE=${1:-localhost/meshlens:$VERSION}
for tool in buildah podman; do
	if [ "$tool" = podman ] && [ "${SKIP_RUN:-}" = 1 ]; then continue; fi
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build.sh: $tool not found: apt-get install -y buildah podman" >&2; exit 1; }
done
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# Static: no libc in the image. timetzdata: SLO calendars need zone data
# that scratch does not have.
CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH $GO build -trimpath -tags timetzdata \
	-ldflags "-s -w -X main.version=$VERSION" -o "$ctx/meshlens-linux-$ARCH" ./cmd/meshlens
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] || { echo "build.sh: no CA bundle at $ca (Debian: apt-get install ca-certificates)" >&2; exit 1; }
cp "$ca" "$ctx/ca-certificates.crt"
buildah build --quiet --layers=false --build-arg TARGETARCH="$ARCH" --build-arg VERSION="$VERSION" \
	-f deploy/container/Containerfile -t "$IMAGE" "$ctx" >/dev/null
echo "built $IMAGE"
[ "${SKIP_RUN:-}" = 1 ] && exit 0

# The check: the version the binary was built with, as user 65532, with no
# capability at all and a read-only root, as the manifests run it. Where
# podman cannot start containers (crun refuses hybrid cgroups, or may not
# set rlimits, in some VMs and CI sandboxes), the same binary is run in the
# image's root filesystem by buildah's chroot isolation, and the script
# says so.
if out=$(podman run --rm --read-only --cap-drop=ALL --network=none "$IMAGE" --version 2>"$ctx/err"); then
	how="podman run --read-only --cap-drop=ALL"
else
	echo "build.sh: podman cannot run containers here: $(tail -n 1 "$ctx/err")" >&2
	echo "build.sh: running the check with buildah run --isolation=chroot instead" >&2
	c=$(buildah from --quiet "$IMAGE")
	out=$(buildah run --isolation=chroot --user 65532:65532 "$c" -- /usr/local/bin/meshlens --version) || {
		buildah rm "$c" >/dev/null; exit 1; }
	buildah rm "$c" >/dev/null
	how="buildah run --isolation=chroot"
fi
case "$out" in
*"$VERSION"*) ;;
*) echo "build.sh: $IMAGE --version printed '$out', want $VERSION" >&2; exit 1 ;;
esac
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = 65532:65532 ] || { echo "build.sh: $IMAGE runs as '$user', want 65532:65532" >&2; exit 1; }
echo "checked $IMAGE ($how): $out, user $user"
