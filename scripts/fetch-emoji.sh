#!/usr/bin/env bash
# Fetch the open emoji training data from the npm registry (never from git) into data/emoji/
# (git-ignored), verify each tarball against pinned sha512 integrity and sha1 shasum (the values
# `npm view <pkg>@<ver> dist.integrity dist.shasum` reports), extract what the dataset needs, and
# build data/emoji/dataset.json with scripts/build_emoji_dataset.py. Idempotent: a verified tarball
# and a finished extraction are kept, so a rerun only rebuilds the (deterministic) dataset.
#   scripts/fetch-emoji.sh             # Google (Noto Emoji) 64x64 PNGs + emoji.json + emojilib keywords
#   scripts/fetch-emoji.sh --twemoji   # also the Twemoji 64x64 PNGs as a second style
# Layout under data/emoji/:
#   npm/<pkg>-<ver>.tgz                    the verified tarballs
#   img/google/64/*.png, img/twitter/64/*.png
#   src/<pkg>/{emoji.json,LICENSE,README.md,package.json,...}   metadata and licence texts
#   dataset.json, LICENSES.md              written by the builder (which also keeps
#                                          models/emoji-split.json and models/EMOJI-DATA.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/data/emoji"

twemoji=0
for arg in "$@"; do
    case "$arg" in
        --twemoji) twemoji=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "fetch-emoji: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# name version sha512-integrity sha1-shasum
pkgs=(
    "emoji-datasource-google 16.0.0 sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A== a80ac3e8106cbd4d8648ce758aa099e8827b6157"
    "emojilib 4.0.3 sha512-KbWiYre9aRSaPbHrHZIz9zmoM+21LAsK1VFJtnTh1VCtWE/rNMDviGhQTmselFl95dhqtGlY22iH0leG5BuW0g== 08f79f04955ba0008336335c80997c8ac7365d5f"
)
if [ "$twemoji" = 1 ]; then
    pkgs+=("emoji-datasource-twitter 16.0.0 sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ== e2bd39a8acb77e158106f8249dd7b4cd93fa1b14")
fi

integrity() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }
shasum1() { sha1sum "$1" | cut -d' ' -f1; }
verified() { # file integrity shasum
    [ -f "$1" ] && [ "$(integrity "$1")" = "$2" ] && [ "$(shasum1 "$1")" = "$3" ]
}

mkdir -p "$data/npm" "$data/src"
for spec in "${pkgs[@]}"; do
    read -r name ver want512 want1 <<<"$spec"
    tgz="$data/npm/$name-$ver.tgz"
    if verified "$tgz" "$want512" "$want1"; then
        echo "ok      $name@$ver: $tgz"
    else
        # The registry must still report the pinned values: a mismatch means the pin or the
        # registry changed, and either way we stop rather than train on something unexpected.
        got512=$(npm view "$name@$ver" dist.integrity)
        got1=$(npm view "$name@$ver" dist.shasum)
        if [ "$got512" != "$want512" ] || [ "$got1" != "$want1" ]; then
            echo "fetch-emoji: npm view $name@$ver reports $got512 / $got1, pinned $want512 / $want1" >&2
            exit 1
        fi
        echo "fetch   $name@$ver: npm pack"
        tmp=$(mktemp -d "$data/npm/.pack.XXXXXX")
        (cd "$tmp" && npm pack --silent "$name@$ver" >/dev/null)
        got="$tmp/$name-$ver.tgz"
        if ! verified "$got" "$want512" "$want1"; then
            echo "fetch-emoji: $name@$ver tarball fails its check: $(integrity "$got") / $(shasum1 "$got")" >&2
            rm -rf "$tmp"
            exit 1
        fi
        mv "$got" "$tgz"
        rm -rf "$tmp"
        echo "fetched $name@$ver: $tgz ($(stat -c %s "$tgz") B, sha512 and sha1 ok)"
    fi

    # Extraction: a stamp holding the tarball's integrity marks a finished one.
    stamp="$data/src/$name/.extracted"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want512" ]; then
        echo "ok      $name@$ver: extracted"
        continue
    fi
    case "$name" in
        emoji-datasource-*)
            style=${name#emoji-datasource-}
            members=(package/emoji.json package/categories.json package/package.json package/LICENSE
                     package/README.md package/CHANGES.md "package/img/$style/64") ;;
        emojilib)
            members=(package/dist/emoji-en-US.json package/package.json package/LICENSE package/README.md) ;;
    esac
    tmp=$(mktemp -d "$data/src/.extract.XXXXXX")
    tar -xzf "$tgz" -C "$tmp" --strip-components=1 --no-same-owner "${members[@]}"
    rm -rf "$data/src/$name"
    if [ -d "$tmp/img" ]; then
        rm -rf "$data/img/$style/64"
        mkdir -p "$data/img/$style"
        mv "$tmp/img/$style/64" "$data/img/$style/64"
        rm -rf "$tmp/img"
        echo "        $name@$ver: $(find "$data/img/$style/64" -name '*.png' | wc -l) PNGs in data/emoji/img/$style/64/"
    fi
    chmod 755 "$tmp"
    mv "$tmp" "$data/src/$name"
    printf '%s' "$want512" >"$stamp"
    echo "extract $name@$ver: data/emoji/src/$name/"
done

build_args=()
[ "$twemoji" = 1 ] && build_args+=(--twemoji)
python3 "$root/scripts/build_emoji_dataset.py" "${build_args[@]}"
