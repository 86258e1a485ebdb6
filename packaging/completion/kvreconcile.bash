# bash completion for kvreconcile                                      -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/kvreconcile (loaded on first use), or source
# it from ~/.bashrc. Needs only bash >= 4; the bash-completion package is not required.
# Keep the option lists in step with the --help texts in reconciler/cli/*.c.

# Adds the directories and *.yaml/*.yml files that start with $1 to COMPREPLY; with $2 = dirs,
# directories only; with $2 = any, files of any name.
_kvreconcile_paths()
{
    local cur=$1 only=${2:-} line
    compopt -o filenames 2>/dev/null
    while IFS= read -r line; do
        [ -n "$line" ] && COMPREPLY+=("$line")
    done < <(compgen -d -- "$cur")
    [ "$only" = dirs ] && return
    while IFS= read -r line; do
        [ -d "$line" ] && continue
        case $only:$line in
        any:* | *.yaml | *.yml) COMPREPLY+=("$line") ;;
        esac
    done < <(compgen -f -- "$cur")
}

_kvreconcile_words()
{
    local line
    while IFS= read -r line; do
        [ -n "$line" ] && COMPREPLY+=("$line")
    done < <(compgen -W "$1" -- "$2")
}

_kvreconcile()
{
    local cur prev i pfx=
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=
    [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}

    # "--output=js": bash splits at '=' when it is in COMP_WORDBREAKS (the default).
    if [ "$cur" = "=" ] && [ "$COMP_CWORD" -gt 1 ]; then
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        cur=
    elif [ "$prev" = "=" ] && [ "$COMP_CWORD" -gt 2 ]; then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $cur == --*=* ]]; then
        # '=' is not a word break here: the reply must carry the option too
        prev=${cur%%=*}
        pfx=$prev=
        cur=${cur#*=}
    fi
    _kvreconcile_reply "$cur" "$prev"
    if [ -n "$pfx" ]; then
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=$pfx${COMPREPLY[i]}; done
    fi
    return 0
}

# Fills COMPREPLY for the word $1 after the word $2 (both with any "--opt=" split off).
_kvreconcile_reply()
{
    local cur=$1 prev=$2 cmd opts i
    local commands="validate plan apply watch export version help"

    if [ "$COMP_CWORD" -le 1 ]; then
        case $cur in
        -*) _kvreconcile_words "--help -h --version" "$cur" ;;
        *) _kvreconcile_words "$commands" "$cur" ;;
        esac
        return 0
    fi
    cmd=${COMP_WORDS[1]}

    case $cmd in
    validate) opts="--file -f --quiet -q --allow-files-under --help -h" ;;
    plan) opts="--file -f --output -o --detailed-exitcode --no-color --out --save-live --live --allow-files-under --help -h" ;;
    apply) opts="--file -f --wait --lock-timeout --quiet -q --log-format --allow-files-under --help -h" ;;
    watch) opts="--interval --once --status-file --metrics-addr --quiet -q --log-format --allow-files-under --help -h" ;;
    export) opts="--output -o --subscription --resource-group -g --vault --profiles --quiet -q --help -h" ;;
    help)
        [ "$COMP_CWORD" -eq 2 ] && _kvreconcile_words "$commands" "$cur"
        return 0
        ;;
    *) return 0 ;; # version takes nothing; unknown commands get nothing
    esac

    # the value of the option before the cursor
    case $prev in
    -o | --output)
        [ "$cmd" = plan ] && { _kvreconcile_words "text json markdown" "$cur"; return 0; }
        [ "$cmd" = export ] && { _kvreconcile_paths "$cur" dirs; return 0; }
        ;;
    --subscription | -g | --resource-group | --vault)
        return 0 # a GUID or an Azure name
        ;;
    --metrics-addr)
        return 0 # HOST:PORT, e.g. 127.0.0.1:9479
        ;;
    --log-format)
        _kvreconcile_words "text json" "$cur"
        return 0
        ;;
    -f | --file)
        _kvreconcile_paths "$cur"
        return 0
        ;;
    --status-file)
        _kvreconcile_paths "$cur" any
        return 0
        ;;
    --allow-files-under)
        _kvreconcile_paths "$cur" dirs
        return 0
        ;;
    --wait | --interval | --lock-timeout)
        return 0 # a duration: 30s, 10m, 2h, 1d
        ;;
    esac

    if [[ $cur == -* ]]; then
        _kvreconcile_words "$opts" "$cur"
        return 0
    fi
    if [ "$cmd" = watch ]; then
        # exactly one directory
        for ((i = 2; i < COMP_CWORD; i++)); do
            case ${COMP_WORDS[i]} in
            --interval | --status-file | --metrics-addr | --log-format | --allow-files-under)
                [ "${COMP_WORDS[i + 1]:-}" = "=" ] && ((i++))
                ((i++))
                # HOST:PORT is three words where ':' breaks words (the default)
                [ "${COMP_WORDS[i + 1]:-}" = ":" ] && ((i += 2))
                ;;
            -* | =) ;;
            *) return 0 ;;
            esac
        done
        _kvreconcile_paths "$cur" dirs
        return 0
    fi
    [ "$cmd" = export ] && return 0 # options only
    # validate, plan, apply: the paths after -f continue until the next option
    _kvreconcile_paths "$cur"
    return 0
}

complete -F _kvreconcile kvreconcile
