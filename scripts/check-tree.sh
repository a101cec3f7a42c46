#!/usr/bin/env bash
# check-tree.sh [DIR]: fail when the git tree in DIR (default: this
# repository) tracks a build output: a file larger than 1 MiB, or an
# executable (ELF, Mach-O, PE, or any file with an execute bit) that is not a
# script starting with "#!".
set -euo pipefail
script=check-tree.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "${1:-$(dirname "$0")/..}"

bad=()
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(stat -c %s "$f")
	if [ "$size" -gt 1048576 ]; then
		bad+=("$f ($size bytes, over 1 MiB)")
		continue
	fi
	magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cffaedfe | cefaedfe | feedface | feedfacf | 4d5a*)
		bad+=("$f (a compiled executable)")
		continue
		;;
	esac
	if [ -x "$f" ] && [ "$(head -c 2 "$f")" != '#!' ]; then
		bad+=("$f (executable bit on a file that is not a script)")
	fi
done < <(git ls-files -z)

if [ ${#bad[@]} -gt 0 ]; then
	printf '%s: tracked: %s\n' "$script" "${bad[@]}" >&2
	die "check-tree" "${#bad[@]} tracked file(s) look like build outputs; git rm them and cover them in .gitignore"
fi
