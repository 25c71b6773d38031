# bash completion for cairnctl. Install: source tools/cairnctl.bash (or copy
# to /etc/bash_completion.d/cairnctl). Commands and flags are read from
# `cairnctl --help` and `cairnctl <command> --help`, so this file never
# falls behind the binary.

_cairnctl_commands() {
	"${1:-cairnctl}" --help 2>/dev/null | awk '/^COMMANDS:/{on=1;next} /^$/{on=0} on{sub(/^\t/,""); split($0,a,"  "); print a[1]}'
}

_cairnctl() {
	local cur prev bin words_cmd i w cmds groups
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	bin=${COMP_WORDS[0]}
	case "$prev" in
	-w | --write-out)
		mapfile -t COMPREPLY < <(compgen -W "simple json table fields protobuf" -- "$cur")
		return
		;;
	--data-dir)
		mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		return
		;;
	esac
	cmds=$(_cairnctl_commands "$bin")
	# The command typed so far: the non-flag words after the binary.
	words_cmd=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		[[ "$w" == -* ]] && continue
		if grep -qx -- "${words_cmd:+$words_cmd }$w" <<<"$cmds" ||
			grep -q -- "^${words_cmd:+$words_cmd }$w " <<<"$cmds"; then
			words_cmd=${words_cmd:+$words_cmd }$w
		fi
	done
	if [[ "$cur" == -* ]]; then
		local flags
		# shellcheck disable=SC2086
		flags=$("$bin" $words_cmd --help 2>/dev/null | grep -oE -- '--[a-z0-9-]+' | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
		return
	fi
	if [ -z "$words_cmd" ]; then
		groups=$(awk '{print $1}' <<<"$cmds" | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$groups help" -- "$cur")
	elif ! grep -qx -- "$words_cmd" <<<"$cmds"; then
		local subs
		subs=$(grep -- "^$words_cmd " <<<"$cmds" | awk '{print $2}')
		mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
	fi
}
complete -F _cairnctl cairnctl
