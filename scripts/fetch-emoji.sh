#!/usr/bin/env bash
# Fetch the open emoji training data from the npm registry (never from git) into data/emoji/
# (git-ignored), verify each tarball against pinned sha512 integrity and sha1 shasum (the values
# `npm view <pkg>@<ver> dist.integrity dist.shasum` reports), extract what the dataset needs, and
# build data/emoji/dataset.json with scripts/build_emoji_dataset.py. Idempotent: a verified tarball
# and a finished extraction are kept, so a rerun only rebuilds the (deterministic) dataset.
#   scripts/fetch-emoji.sh             # Google (Noto Emoji) 64x64 PNGs + emoji.json + emojilib keywords,
#                                      # and the Iconify emoji sets, rendered by `pmg train styles`
#   scripts/fetch-emoji.sh --google-only   # the Google PNGs alone (no Rust build needed)
# Layout under data/emoji/:
#   npm/<pkg>-<ver>.tgz                    the verified tarballs
#   img/google/64/*.png, img/<iconify set>/64/*.png (rendered from SVG)
#   src/<pkg>/{emoji.json,LICENSE,README.md,package.json,...}   metadata and licence texts
#   crates/pmg/src/iconify-<set>/{icons.json,chars.json,info.json,...}     an Iconify set
#   dataset.json, LICENSES.md              written by the builder (which also keeps
#                                          models/emoji-split.json and models/EMOJI-DATA.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/data/emoji"

iconify=1
for arg in "$@"; do
    case "$arg" in
        --google-only) iconify=0 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "fetch-emoji: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# name version sha512-integrity sha1-shasum
pkgs=(
    "emoji-datasource-google 16.0.0 sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A== a80ac3e8106cbd4d8648ce758aa099e8827b6157"
    "emojilib 4.0.3 sha512-KbWiYre9aRSaPbHrHZIz9zmoM+21LAsK1VFJtnTh1VCtWE/rNMDviGhQTmselFl95dhqtGlY22iH0leG5BuW0g== 08f79f04955ba0008336335c80997c8ac7365d5f"
)
# The Iconify sets `pmg train styles` renders (crates/pmg-train/src/styles.rs lists them with how each joins
# emoji.json). openmoji is share-alike (CC-BY-SA-4.0): it is rendered for evaluation only.
if [ "$iconify" = 1 ]; then
    pkgs+=(
        "@iconify-json/twemoji 1.2.5 sha512-uKpuIEV0v6K5BW3Mjdyl+XKFVAbbcPxAgifKvEMtZoUZB5+YiY5zaMm2uNNCxyXzAWU9yNLlj41WU6/mvgALsw== 52e65345122ef4eff61a8bf9eceefbdbb5294c7a"
        "@iconify-json/fluent-emoji-flat 1.2.6 sha512-RY47RgPb47fYUiyrA64sIOL0+UU02s29sXpNBbIQRBUlPlfNFTKUmZDERGuxDs/7yNGWqQYvuaSYM1M4fRXlUw== 5586071d17e0d3460c185a67effc389f0bd95907"
        "@iconify-json/fluent-emoji 1.2.7 sha512-D8G6bKAyIsyxP1rzZtIWr/gg/fO4Rg1+DyCWlfqKK4h8W+4Em/Y0P6QYgJUQTlUcagzJvSyg+9OBv4hz4Hc/QA== 93fa6ee6e46be10adeaf33c0bda08a10e142dd0d"
        "@iconify-json/noto-v1 1.2.5 sha512-/DsVMius69Q0fRS53z7QK1TROSuar606jiIx+laXtdsYGMXpf6LtHBx6CGfoo3UHHb/XpBsw+1L1x3eyPqMuVA== 5e8b04718889814019ea9f604f1af152e961a0db"
        "@iconify-json/emojione 1.2.3 sha512-T9+T3HIbJNLKKsmxYKlaYhvnHYkz/HNYTV7SHCXVZPfeUi4FqskY70YeN8yYAZT8cCv7w5vJxS4Q1m8zb9CMMg== b74a8f5d73a3d94b4948c9b9d4eef4ab0d3927b9"
        "@iconify-json/fxemoji 1.2.2 sha512-UAasRaxzFUKfIGSmLwnoarsssA4LX0VLLuEmplIqM6ZNQqIQRtav8tZ4H1neTlBreXuMQyAifr5jP4kn78DpiQ== cfc146e8936b7fa7924ee515e74618404a730136"
        "@iconify-json/streamline-emojis 1.2.4 sha512-iNr9T9XuZVTyQPJO8ZlLxBzPkpi7qMl+z1l0C31vpEMqhPMelth3n7CeWQYtixdetDPdI81yeG4ROqjWpYJE6A== bfc5a1693ef87eb07270c4efe2e92904b6fd7c10"
        "@iconify-json/openmoji 1.2.29 sha512-vXdhkqcXVSO6suy+m9LbcUM3OdVyuNOtpV8/als/WqfkQIRxevL5Geb/g+6GH/Qwnq1OqksEmaDGTCmZ5nFKJQ== abf3b76420992ec5b44afa6ddbed8ae7fb6526eb"
    )
fi

integrity() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }
shasum1() { sha1sum "$1" | cut -d' ' -f1; }
verified() { # file integrity shasum
    [ -f "$1" ] && [ "$(integrity "$1")" = "$2" ] && [ "$(shasum1 "$1")" = "$3" ]
}

mkdir -p "$data/npm" "$data/src"
for spec in "${pkgs[@]}"; do
    read -r name ver want512 want1 <<<"$spec"
    # npm pack names a scoped package's tarball @scope/name -> scope-name-<ver>.tgz.
    file=$(printf '%s' "$name" | sed 's|^@||; s|/|-|')
    dir=$(printf '%s' "$name" | sed 's|^@iconify-json/|iconify-|')
    tgz="$data/npm/$file-$ver.tgz"
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
        got="$tmp/$file-$ver.tgz"
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
    stamp="$data/src/$dir/.extracted"
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
        @iconify-json/*)
            members=(package/icons.json package/chars.json package/info.json package/package.json package/README.md) ;;
    esac
    tmp=$(mktemp -d "$data/src/.extract.XXXXXX")
    tar -xzf "$tgz" -C "$tmp" --strip-components=1 --no-same-owner "${members[@]}"
    rm -rf "$data/src/$dir"
    if [ -d "$tmp/img" ]; then
        rm -rf "$data/img/$style/64"
        mkdir -p "$data/img/$style"
        mv "$tmp/img/$style/64" "$data/img/$style/64"
        rm -rf "$tmp/img"
        echo "        $name@$ver: $(find "$data/img/$style/64" -name '*.png' | wc -l) PNGs in data/emoji/img/$style/64/"
    fi
    chmod 755 "$tmp"
    mv "$tmp" "$data/src/$dir"
    printf '%s' "$want512" >"$stamp"
    echo "extract $name@$ver: data/emoji/src/$dir/"
done

if [ "$iconify" = 1 ]; then
    # Rendering is deterministic; a stamp of the pins marks a finished one.
    stamp="$data/img/.styles"
    want=$(printf '%s\n' "${pkgs[@]}" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "ok      Iconify sets: rendered"
    else
        pmg=${PMG_BIN:-$root/target/release/pmg}
        [ -x "$pmg" ] || (cd "$root" && cargo build --release)
        "$pmg" train styles --data "$data"
        printf '%s' "$want" >"$stamp"
    fi
fi
build_args=()
[ "$iconify" = 0 ] && build_args+=(--google-only)
python3 "$root/scripts/build_emoji_dataset.py" "${build_args[@]}"
