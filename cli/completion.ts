/**
 * `bundle completion bash|zsh`: a static completion script made from the same command table
 * as `--help`, so a new flag completes as soon as it exists. Static, so pressing TAB never
 * starts Node.
 */
import type { Command } from './command.js';
import { commandFlags, commandPaths } from './program.js';

function table(commands: readonly Command[]): { key: string; flags: string[] }[] {
  return commandPaths().map((p) => ({ key: p.join(' '), flags: commandFlags(p, commands) }));
}

function groups(): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of commandPaths()) {
    const head = p[0] as string;
    if (!m.has(head)) m.set(head, []);
    if (p.length > 1) m.get(head)?.push(p[1] as string);
  }
  return m;
}

function bash(commands: readonly Command[]): string {
  const g = groups();
  const heads = [...g.keys()].join(' ');
  const subCases = [...g].filter(([, subs]) => subs.length > 0).map(([head, subs]) => `    ${head}) words="${subs.join(' ')}" ;;`);
  const flagCases = table(commands).map((c) => `    "${c.key}") words="${c.flags.join(' ')}" ;;`);
  return `# bash completion for bundle and seabag: bundle completion bash > /etc/bash_completion.d/bundle
_bundle() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" words="" i n=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -*) ;;
      *) if ((n == 0)); then cmd="\${COMP_WORDS[i]}"; n=1
         elif ((n == 1)) && [[ "$cmd" == trust ]]; then cmd="$cmd \${COMP_WORDS[i]}"; n=2; fi ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    words="${heads}"
  elif [[ "$cur" != -* ]]; then
    case "$cmd" in
${subCases.join('\n')}
      completion) words="bash zsh" ;;
      *) COMPREPLY=(); return 0 ;;
    esac
  else
    case "$cmd" in
${flagCases.join('\n')}
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -o bashdefault -F _bundle bundle seabag
`;
}

function zsh(commands: readonly Command[]): string {
  const g = groups();
  const heads = [...g.keys()].join(' ');
  const subCases = [...g].filter(([, subs]) => subs.length > 0).map(([head, subs]) => `    ${head}) compadd -- ${subs.join(' ')}; return ;;`);
  const flagCases = table(commands).map((c) => `      "${c.key}") compadd -- ${c.flags.join(' ')} ;;`);
  return `#compdef bundle seabag
# zsh completion for bundle and seabag: bundle completion zsh > ~/.zfunc/_bundle
_bundle() {
  local cmd=\${words[2]}
  if (( CURRENT == 2 )); then
    compadd -- ${heads}
    return
  fi
  if (( CURRENT == 3 )) && [[ \${words[CURRENT]} != -* ]]; then
    case $cmd in
${subCases.join('\n')}
    completion) compadd -- bash zsh; return ;;
    esac
  fi
  [[ $cmd == trust ]] && cmd="trust \${words[3]}"
  if [[ \${words[CURRENT]} == -* ]]; then
    case $cmd in
${flagCases.join('\n')}
    esac
  else
    _files
  fi
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _bundle "$@"
else
  compdef _bundle bundle seabag
fi
`;
}

export function completionScript(shell: 'bash' | 'zsh', commands: readonly Command[]): string {
  return shell === 'zsh' ? zsh(commands) : bash(commands);
}
