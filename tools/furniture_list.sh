#!/bin/sh
# furniture_list.sh OUTDIR: unpacks Sweet Home 3D's furniture catalogs (Debian
# packages sweethome3d and sweethome3d-furniture: the application jar and the
# .sh3f catalogs are zip files holding OBJ models and .properties indexes) into
# OUTDIR and prints one line per model: path<TAB>name<TAB>category.
# When the packages are not installed it fetches them with `apt-get download`
# (no installation, no Java) and unpacks them with dpkg-deb.
set -eu
out=${1:?usage: furniture_list.sh OUTDIR}
mkdir -p "$out"
share=/usr/share/sweethome3d
if [ ! -f "$share/sweethome3d.jar" ] || ! ls "$share"/furniture/*.sh3f >/dev/null 2>&1; then
  share="$out/unpacked/usr/share/sweethome3d"
fi
if [ ! -f "$share/sweethome3d.jar" ] || ! ls "$share"/furniture/*.sh3f >/dev/null 2>&1; then
  echo "furniture_list.sh: $share incomplete; fetching the Debian packages into $out/debs" >&2
  mkdir -p "$out/debs" "$out/unpacked"
  (cd "$out/debs" && apt-get download sweethome3d sweethome3d-furniture >&2)
  for d in "$out"/debs/*.deb; do dpkg-deb -x "$d" "$out/unpacked"; done
  share="$out/unpacked/usr/share/sweethome3d"
fi
# catalog archive, its properties file inside, a short name for its folder
list_catalog() {
  archive=$1 props=$2 dir="$out/$3"
  mkdir -p "$dir"
  unzip -qo "$archive" '*.obj' "$props" -d "$dir" >&2
  # Entries are key#N=value; keep model, name and category of each N (the
  # English file, without locale suffix). Undo the .properties escapes \: \= \  .
  # .properties files are ISO-8859-1; \uXXXX escapes are left as they are.
  iconv -f ISO-8859-1 -t UTF-8 "$dir/$props" | awk -v dir="$dir" -F= '
    /^[ \t]*#/ { next }
    {
      eq = index($0, "="); if (eq == 0) next
      key = substr($0, 1, eq - 1); val = substr($0, eq + 1)
      gsub(/\\:/, ":", val); gsub(/\\=/, "=", val); gsub(/\\ /, " ", val)
      gsub(/\t/, " ", val); sub(/\r$/, "", val)
      n = index(key, "#"); if (n == 0) next
      field = substr(key, 1, n - 1); id = substr(key, n + 1)
      if (field == "model" || field == "name" || field == "category") { v[field, id] = val; ids[id] = 1 }
    }
    END {
      for (id in ids) if ((("model", id) in v) && v["model", id] ~ /\.[oO][bB][jJ]$/)
        printf "%s%s\t%s\t%s\n", dir, v["model", id], v["name", id], v["category", id]
    }' | sort
}
list_catalog "$share/sweethome3d.jar" com/eteks/sweethome3d/io/DefaultFurnitureCatalog.properties default
for c in "$share"/furniture/*.sh3f; do
  base=$(basename "$c" .sh3f)
  list_catalog "$c" PluginFurnitureCatalog.properties "$base"
done
