#!/usr/bin/env bash
# Fetch or build a dataset in the canonical layout (data/<name>/metadata.csv, labels.json,
# images/). A thin wrapper: the work is done by `python -m emolib data ...`.
# Docs: book/own_data.md.
set -euo pipefail

prog="data_download.sh"
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'EOF'
Usage: ./data_download.sh SOURCE [--out DIR] [--force] [options]

Fetch or build a dataset in the canonical layout (metadata.csv, labels.json, images/).
DIR defaults to data/SOURCE next to this script. Re-running a finished download does
nothing; --force rebuilds it.

Sources and their options:
  synthetic          EmoSynth, drawn offline and deterministically (default choice)
      --size N             number of examples
      --image-size 64|224  image side in pixels
      --classes K          number of emoji classes (even)
      --noise P            label-noise probability
      --seed S             random seed
  instagram          public Instagram posts with captions from the Hugging Face hub
                     (kkcosmos/instagram-images-with-captions, about 3.7 GB); labelled
                     with the protocol of Barbieri et al. 2018
      --top-k K            keep the K most frequent emoji as classes (default 10)
      --max-posts N        stop after converting N posts (default: all)
      --parquet-dir DIR    use parquet files already on disk instead of downloading
      --cache-dir DIR      Hugging Face cache folder for the download
      --seed S, --max-side PX
  twitter-emoticon   your copy of the paper's Multimodal-TwitterEmoticon data
      --from DIR           a folder (or table file) with text, image and label columns
      --url URL            or a tar archive (.tar, .tar.gz, .tar.bz2, .tar.xz) to download ...
      --sha256 HEX         ... with its SHA-256 checksum (required with --url)
      --table FILE         the table (.csv or .tsv), when the folder holds several
      --labels FILE        a labels.json: the classes to keep, in order
      --seed S, --max-side PX

Environment: PYTHON (default: .venv/bin/python next to this script, else python3).
EOF
}

die() {
    printf '%s: %s\n' "$prog" "$1" >&2
    exit "${2:-1}"
}

source_name="${1:-}"
case "$source_name" in
    -h | --help) usage; exit 0 ;;
    "") die "no SOURCE given; choose synthetic, instagram or twitter-emoticon (see --help)" 2 ;;
    synthetic) command="synth"; allowed="--size --image-size --classes --noise --seed" ;;
    instagram) command="instagram"
        allowed="--top-k --max-posts --parquet-dir --cache-dir --seed --max-side" ;;
    twitter-emoticon) command="twitter-emoticon"
        allowed="--from --url --sha256 --table --labels --seed --max-side" ;;
    *) die "unknown source '$source_name'; choose synthetic, instagram or twitter-emoticon (see --help)" 2 ;;
esac
shift

out="$here/data/$source_name"
force=0
has_from=0
has_url=0
has_sha=0
args=()
while (($# > 0)); do
    option="$1"
    case "$option" in
        -h | --help) usage; exit 0 ;;
        --force) force=1; shift; continue ;;
        --*=*) value="${option#*=}"; option="${option%%=*}"; shift ;;
        --*)
            (($# >= 2)) || die "option $option needs a value (see --help)" 2
            value="$2"; shift 2 ;;
        *) die "unexpected argument '$option' (see --help)" 2 ;;
    esac
    if [[ "$option" == "--out" ]]; then
        [[ -n "$value" ]] || die "--out needs a folder" 2
        out="$value"
        continue
    fi
    case " $allowed " in
        *" $option "*) ;;
        *) die "unknown option $option for $source_name; it accepts: --out --force $allowed" 2 ;;
    esac
    case "$option" in
        --size | --classes | --seed | --top-k | --max-posts | --max-side)
            [[ "$value" =~ ^[0-9]+$ ]] || die "$option needs a whole number, got '$value'" 2 ;;
        --image-size)
            [[ "$value" == "64" || "$value" == "224" ]] || die "--image-size must be 64 or 224, got '$value'" 2 ;;
        --sha256)
            [[ "$value" =~ ^[0-9a-fA-F]{64}$ ]] || die "--sha256 needs 64 hex digits, got '$value'" 2
            has_sha=1 ;;
        --from) has_from=1 ;;
        --url) has_url=1 ;;
    esac
    args+=("$option" "$value")
done

if [[ "$source_name" == "twitter-emoticon" ]]; then
    ((has_from + has_url == 1)) || die "twitter-emoticon needs exactly one of --from DIR or --url URL --sha256 HEX" 2
    ((has_url == 0 || has_sha == 1)) || die "--url needs --sha256 HEX, the checksum of the archive (sha256sum FILE prints it)" 2
fi

# Python owns the dataset folder: it skips a finished one, builds beside it, and marks it
# complete only once it is (so a failed --force keeps the old one).
if ((force == 1)); then
    args+=("--force")
fi

if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif [[ -x "$here/.venv/bin/python" ]]; then
    python="$here/.venv/bin/python"
else
    python="python3"
fi
command -v -- "$python" >/dev/null 2>&1 || die "cannot find Python '$python'; run 'make setup' or set PYTHON"

# On failure Python has printed its one-line reason; pass its exit status on.
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" -m emolib data "$command" --out "$out" ${args[@]+"${args[@]}"}

