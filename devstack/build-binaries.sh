#!/usr/bin/env bash
# Builds the local stack's binaries from their official Go modules, once, into a cache outside
# the clone keyed by the pinned versions (devstack/versions.env). Re-running is a no-op when the
# cache already holds them. Usage: devstack/build-binaries.sh [component ...]
#   components: etcd kubernetes kwok minio helm argocd (default: all)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${WALWARDEN_CACHE:-$HOME/.cache/walwarden}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
work=$cache/build
mkdir -p "$work"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# install_into DIR NAME...: true when every NAME already sits in DIR (a finished build).
have_all() {
  local dir=$1; shift
  for name in "$@"; do [ -x "$dir/$name" ] || return 1; done
}

# Build into a temporary folder and rename it into place, so a build cut short never
# looks finished to the next run.
finish() { rm -rf "$2"; mv "$1" "$2"; }

# fresh DIR...: empty folders for a build (its wrapper module, its binaries' temporary folder).
fresh() { rm -rf "$@"; mkdir -p "$@"; }

# module_info DIR MODULE@VERSION FIELD: one field of `go mod download -json` (GoMod, Dir, Sum).
module_info() {
  (cd "$1" && go mod download -json "$2") | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$3"
}

build_etcd() {
  local dest=$cache/bin/etcd-$ETCD_VERSION
  have_all "$dest" etcd && return 0
  log "etcd $ETCD_VERSION"
  # server/v3's own go.mod has replace lines, so `go install` refuses it: build from a wrapper.
  local mod=$work/etcd-$ETCD_VERSION tmp=$dest.tmp
  fresh "$mod" "$tmp"
  (cd "$mod" && go mod init walwarden.local/etcdbuild >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  finish "$tmp" "$dest"
}

build_kubernetes() {
  local dest=$cache/bin/kubernetes-$KUBERNETES_VERSION
  have_all "$dest" kube-apiserver kube-controller-manager kube-scheduler kubectl && return 0
  log "kubernetes $KUBERNETES_VERSION (the long one: ~1 GB of modules, 4–6 minutes cold here)"
  local mod=$work/kubernetes-$KUBERNETES_VERSION tmp=$dest.tmp
  fresh "$mod" "$tmp"
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local staging_version=v0.${KUBERNETES_VERSION#v1.}
  # k8s.io/kubernetes replaces every staging module with a local path; a wrapper module
  # replaces them instead with their published versions (v0.<minor>.<patch>). The list is read
  # from the pinned go.mod itself, so a version bump needs no edit here.
  local gomod
  gomod=$(module_info "$mod" "k8s.io/kubernetes@$KUBERNETES_VERSION" GoMod)
  {
    echo "module walwarden.local/kubebuild"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" \
      | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > "$mod/go.mod"
  local c cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local pkgs=()
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$mod" && go get "${pkgs[@]/%/@$KUBERNETES_VERSION}")
  # Without these the binaries report v0.0.0, and clients that pick flags by version misbehave.
  local build_date; build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  for c in "${cmds[@]}"; do
    log "  $c"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$tmp/$c" "k8s.io/kubernetes/cmd/$c")
  done
  finish "$tmp" "$dest"
}

build_go_install() { # NAME VERSION BINARY... -- PACKAGE...
  local name=$1 version=$2; shift 2
  local bins=() pkgs=()
  while [ "$1" != "--" ]; do bins+=("$1"); shift; done; shift
  pkgs=("$@")
  local dest=$cache/bin/$name-$version tmp=$cache/bin/$name-$version.tmp
  have_all "$dest" "${bins[@]}" && return 0
  log "$name $version"
  fresh "$tmp"
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" "${pkgs[@]/%/@$version}"
  finish "$tmp" "$dest"
}

build_kwok() { build_go_install kwok "$KWOK_VERSION" kwok -- sigs.k8s.io/kwok/cmd/kwok; }
build_minio() { build_go_install minio "$MINIO_VERSION" minio -- github.com/minio/minio; }
build_helm() {
  local dest=$cache/bin/helm-$HELM_VERSION tmp=$cache/bin/helm-$HELM_VERSION.tmp
  # A helm built without the release ldflags says "v3.19" and assumes Kubernetes v1.20 for
  # .Capabilities; one built so (by an earlier recipe) is rebuilt.
  if have_all "$dest" helm \
      && [ "$("$dest/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    return 0
  fi
  log "helm $HELM_VERSION"
  local mod=$work/helm-$HELM_VERSION
  fresh "$mod" "$tmp"
  # As helm's Makefile does: the Kubernetes version it assumes is the one of its client-go.
  local gomod client_go minor
  gomod=$(module_info "$mod" "helm.sh/helm/v3@$HELM_VERSION" GoMod)
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  minor=$(echo "$client_go" | cut -d. -f2)
  local v=helm.sh/helm/v3/internal/version ldflags="-s -w"
  ldflags+=" -X $v.version=$HELM_VERSION -X $v.metadata= -X $v.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN=$tmp go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  finish "$tmp" "$dest"
}

build_argocd() {
  local dest=$cache/bin/argocd-$ARGOCD_VERSION mod=$work/argocd-$ARGOCD_VERSION
  have_all "$dest" argocd && return 0
  log "argocd $ARGOCD_VERSION (the other long one: ~12 minutes cold on 2 busy CPUs)"
  local tmp=$dest.tmp module=github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION
  fresh "$mod" "$tmp"
  # Its go.mod needs a newer Go than the machine's: the proxy serves that toolchain.
  local -x GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN
  # argo-cd's go.mod has replace lines (so `go install` refuses it), one of them to
  # ./gitops-engine, a folder its module zip does not hold: a wrapper module requires the
  # published gitops-engine of the same version and copies every other replace line.
  local gomod; gomod=$(module_info "$mod" "$module" GoMod)
  {
    echo "module walwarden.local/argocdbuild"
    echo
    grep -m1 -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
    echo "require github.com/argoproj/argo-cd/gitops-engine/v3 $ARGOCD_VERSION"
    echo
    awk '/^replace \($/ {inside=1; next} inside && /^\)$/ {inside=0; next}
         inside && / => / && $3 !~ /^\.\// {print "replace " $0}
         /^replace [^(]/ && $4 !~ /^\.\// {print}' "$gomod"
  } > "$mod/go.mod"
  local pkg=github.com/argoproj/argo-cd/v3/cmd
  (cd "$mod" && go get "$pkg@$ARGOCD_VERSION")
  # As argo-cd's Makefile does, or the binary reports v99.99.99+unknown. A module zip has no git
  # commit: its checksum (h1:...) names the source instead, and with it the version reads as the tag.
  local client_go sum build_date v=github.com/argoproj/argo-cd/v3/common
  client_go=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/client-go)
  sum=$(module_info "$mod" "$module" Sum)
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w -X $v.version=${ARGOCD_VERSION#v} -X $v.buildDate=$build_date -X $v.gitCommit=$sum"
  ldflags+=" -X $v.gitTag=$ARGOCD_VERSION -X $v.gitTreeState=clean -X $v.kubectlVersion=$client_go"
  # One multi-call binary: the role comes from argv[0] or ARGOCD_BINARY_NAME.
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$tmp/argocd" "$pkg")
  finish "$tmp" "$dest"
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kwok kubernetes minio helm argocd)
for c in "${components[@]}"; do
  start=$SECONDS
  "build_$c"
  log "$c ready ($((SECONDS - start))s)"
done
