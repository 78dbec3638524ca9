#!/bin/sh
# assets_list.sh OUTDIR: fetches Debian's game and CAD asset packages (apt-get
# download, nothing installed), unpacks them under OUTDIR/unpacked/<package>/
# and prints one line per mesh file for `build_dataset --list`:
#   path<TAB>name<TAB>category<TAB>package<TAB>license<TAB>original path<TAB>up axis
# Sources (docs/data.md): kicad-packages3d (VRML), 0ad-data (PMD inside
# public.zip; only art/meshes is unzipped), flightgear-data-{base,models,ai}
# (AC3D, read through Assimp), supertuxkart-data (SPM), ufoai-data (MD2 inside
# 0models.pk3; only those are unzipped) and
# Sweet Home 3D's furniture (OBJ, tools/furniture_list.sh). Downloads and
# unpacked trees are kept, so a second run only lists (a few GB on disk).
set -eu
out=${1:?usage: assets_list.sh OUTDIR}
mkdir -p "$out/debs" "$out/unpacked"
packages="kicad-packages3d 0ad-data flightgear-data-base flightgear-data-models flightgear-data-ai supertuxkart-data ufoai-data"
for p in $packages; do
  [ -f "$out/unpacked/$p/.done" ] && continue
  if ! ls "$out/debs/${p}_"*.deb >/dev/null 2>&1; then
    echo "assets_list.sh: downloading $p into $out/debs" >&2
    (cd "$out/debs" && apt-get download "$p" >&2)
  fi
  echo "assets_list.sh: unpacking $p" >&2
  mkdir -p "$out/unpacked/$p"
  dpkg-deb -x "$out/debs/${p}_"*.deb "$out/unpacked/$p"
  if [ "$p" = 0ad-data ]; then
    zip=$(find "$out/unpacked/$p" -name public.zip | head -n 1)
    unzip -qo "$zip" 'art/meshes/*' -d "$out/unpacked/$p/public" >&2
    rm -f "$zip"  # 3 GB of textures and sounds the dataset does not need
  fi
  if [ "$p" = ufoai-data ]; then  # the models are inside a .pk3 (zip)
    unzip -qo "$out/unpacked/$p/usr/share/games/ufoai/base/0models.pk3" '*.md2' -d "$out/unpacked/$p/models" >&2
  fi
  touch "$out/unpacked/$p/.done"
done

# list PACKAGE LICENSE UP ROOT PATTERN: one line per file under ROOT; the
# category is the folder path below ROOT, the name the file name.
list() {
  package=$1 license=$2 up=$3 root=$4 pattern=$5
  [ -d "$root" ] || { echo "assets_list.sh: $root missing" >&2; return 0; }
  find "$root" -type f -iname "$pattern" | LC_ALL=C sort | awk -v pkg="$package" -v lic="$license" -v up="$up" \
      -v root="$root/" -v pre="$out/unpacked/$package" -F/ '{
    rel = substr($0, length(root) + 1)
    name = $NF; sub(/\.[^.]*$/, "", name)
    cat = rel; sub(/\/[^\/]*$/, "", cat); if (cat == rel) cat = ""
    orig = substr($0, length(pre) + 1)
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", $0, name, cat, pkg, lic, orig, up
  }'
}
u=$out/unpacked
list kicad-packages3d "CC-BY-SA-4.0 with exception" z "$u/kicad-packages3d/usr/share/kicad/3dmodels" '*.wrl'
list 0ad-data CC-BY-SA-3.0 y "$u/0ad-data/public/art/meshes" '*.pmd'
for p in flightgear-data-base flightgear-data-models flightgear-data-ai; do
  list $p GPL-2+ y "$u/$p/usr/share/games/flightgear" '*.ac'
done
list supertuxkart-data "CC-BY-SA/CC0 (per file, see the package)" y "$u/supertuxkart-data/usr/share/games/supertuxkart/data" '*.spm'
list ufoai-data GPL-2+ z "$u/ufoai-data/models/models" '*.md2'
# Sweet Home 3D's furniture, as `make data` lists it (path, name, category).
tools/furniture_list.sh "$out/furniture" | awk -F'\t' -v pre="$out/furniture/" '{
  printf "%s\t%s\t%s\tsweethome3d\tCC-BY-3.0/CC0 (per catalog)\t%s\ty\n", $1, $2, $3, substr($1, length(pre) + 1)
}'
