#!/usr/bin/env bash
# Lays out build/nsview/prodet/ as the installed namespace: real folders, each .py file a
# link to the repository's. mypy and import-linter read packages from the file system
# rather than through setuptools' editable-install finder, so they need prodet.annotations
# ... prodet.serve at the paths the module names say (the stage folders stay top-level).
set -euo pipefail
cd "$(dirname "$0")/.."
view=build/nsview
rm -rf "$view"
link_tree() {  # SOURCE_FOLDER DESTINATION_FOLDER
  find "$1" -name '*.py' -not -path '*/__pycache__/*' | while read -r file; do
    rel=${file#"$1"/}
    mkdir -p "$2/$(dirname "$rel")"
    ln -s "$PWD/$file" "$2/$rel"
  done
}
link_tree prodet "$view/prodet"
for stage in annotations datasets detection export serve configs; do
  link_tree "$stage" "$view/prodet/$stage"
done
echo "$view"
