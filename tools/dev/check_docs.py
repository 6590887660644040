"""Checks the documentation: relative links resolve, and the runnable commands run.

    python tools/dev/check_docs.py                 # README.md and docs/*.md: links and commands
    python tools/dev/check_docs.py --links-only    # links only
    python tools/dev/check_docs.py --list          # the runnable commands, without running them
    python tools/dev/check_docs.py docs/tools.md   # some files only

A fenced block whose info string is ``bash runnable`` or ``python runnable`` is run from the
repository root: each command of a bash block (one line, or lines joined by a trailing
backslash; blank and comment lines skipped) with bash, a python block as one script; a
command repeated on several pages runs once. This
interpreter's folder comes first on ``PATH``, so ``python`` in a command is this
environment's, and the repository first on ``PYTHONPATH``. Blocks marked only ``bash`` or
``python`` are not run (docs/development.md says which tests cover them).

Every relative link (``[text](path)``, ``[text](path#anchor)``, ``[text](#anchor)``, images
too) outside code must name an existing file or folder, and an anchor into a Markdown page
must name one of its headings (GitHub's slugs). Problems are printed as ``FILE:LINE: ...``;
the exit status is 1 when there is any.
"""
import argparse
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RUNNABLE = 'runnable'
LANGUAGES = ('bash', 'python')
DEFAULT_TIMEOUT = 300

_FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})\s*([^`]*)$')
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_INLINE_CODE = re.compile(r'(`+)(?:(?!\1).)+?\1')
_HEADING = re.compile(r'^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$')


class Command(NamedTuple):
    path: str  # the Markdown file
    line: int  # 1-based line of the command's first line
    language: str  # 'bash' or 'python'
    text: str


class Problem(NamedTuple):
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f'{osp.relpath(self.path, REPO)}:{self.line}: {self.message}'


def default_files(root: str = REPO) -> List[str]:
    """README.md and every Markdown page of docs/."""
    return [osp.join(root, 'README.md'), *sorted(glob.glob(osp.join(root, 'docs', '*.md')))]


def _scan(path: str):
    """Yields ``(line number, text, fence)`` per line; ``fence`` is None outside code
    blocks, else ``(info string, line number of the opening fence)``. Fence lines
    themselves are yielded with the fence they open or close."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    fence = None  # (marker, info, opening line)
    for number, text in enumerate(lines, 1):
        match = _FENCE.match(text)
        if fence is None and match:
            fence = (match.group(1), match.group(2).strip(), number)
            yield number, text, (fence[1], number)
            continue
        if fence is not None and match and match.group(1)[0] == fence[0][0] \
                and len(match.group(1)) >= len(fence[0]) and not match.group(2).strip():
            yield number, text, (fence[1], fence[2])
            fence = None
            continue
        yield number, text, None if fence is None else (fence[1], fence[2])


def runnable_commands(path: str) -> List[Command]:
    """The commands of the runnable blocks of ``path``, in order."""
    blocks: Dict[int, List] = {}  # opening line -> [language, [(line, text)]]
    for number, text, fence in _scan(path):
        if fence is None or number == fence[1]:
            if fence is not None:
                words = fence[0].split()
                if len(words) >= 2 and words[0] in LANGUAGES and RUNNABLE in words[1:]:
                    blocks[number] = [words[0], []]
            continue
        block = blocks.get(fence[1])
        if block is not None and not _FENCE.match(text):
            block[1].append((number, text))
    commands = []
    for language, lines in blocks.values():
        if language == 'python':
            if lines:
                commands.append(Command(path, lines[0][0], language,
                                        '\n'.join(text for _, text in lines)))
            continue
        pending, start = [], None
        for number, text in lines:
            stripped = text.strip()
            if not pending and (not stripped or stripped.startswith('#')):
                continue
            if not pending:
                start = number
            if stripped.endswith('\\'):
                pending.append(stripped[:-1].rstrip())
                continue
            pending.append(stripped)
            commands.append(Command(path, start, language, ' '.join(pending)))
            pending = []
        if pending:
            commands.append(Command(path, start, language, ' '.join(pending)))
    return commands


def unique(commands: Sequence[Command]) -> List[Command]:
    """The commands with repeats left out (a command shown on several pages runs once, at
    its first place)."""
    seen, result = set(), []
    for command in commands:
        key = (command.language, command.text.strip())
        if key not in seen:
            seen.add(key)
            result.append(command)
    return result


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'`|\*\*|__|\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: str) -> set:
    """The anchors of the headings of a Markdown file (duplicates numbered as GitHub does)."""
    seen: Dict[str, int] = {}
    result = set()
    for _, text, fence in _scan(path):
        match = _HEADING.match(text) if fence is None else None
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f'{base}-{count}')
    return result


def check_links(paths: Sequence[str]) -> List[Problem]:
    """Broken relative links (missing files, unknown anchors) in ``paths``."""
    problems = []
    cache: Dict[str, set] = {}
    for path in paths:
        for number, text, fence in _scan(path):
            if fence is not None:
                continue
            for match in _LINK.finditer(_INLINE_CODE.sub('', text)):
                target = match.group(1)
                if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):  # http:, mailto:, ...
                    continue
                file_part, _, anchor = target.partition('#')
                resolved = osp.normpath(osp.join(osp.dirname(path), file_part)) \
                    if file_part else path
                if not osp.exists(resolved):
                    problems.append(Problem(path, number, f'link to a missing file: {target}'))
                    continue
                if anchor and resolved.endswith('.md'):
                    if resolved not in cache:
                        cache[resolved] = anchors(resolved)
                    if anchor not in cache[resolved]:
                        problems.append(Problem(path, number, f'link to a missing heading: '
                                                              f'{target}'))
    return problems


def command_env(root: str = REPO) -> Dict[str, str]:
    env = dict(os.environ)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [root, env.get('PYTHONPATH')]))
    env.setdefault('MPLBACKEND', 'Agg')
    return env


def run_command(command: Command, timeout: float = DEFAULT_TIMEOUT,
                root: str = REPO) -> Optional[Problem]:
    """Runs one command from ``root``; returns the problem, or None when it exits with 0."""
    argv = (['bash', '-c', command.text] if command.language == 'bash'
            else [sys.executable, '-c', command.text])
    first_line = command.text.strip().splitlines()[0]
    try:
        result = subprocess.run(argv, cwd=root, env=command_env(root), capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Problem(command.path, command.line,
                       f'timed out after {timeout:g} s: {first_line}')
    if result.returncode == 0:
        return None
    tail = '\n'.join((result.stdout + result.stderr).strip().splitlines()[-15:])
    return Problem(command.path, command.line,
                   f'exit status {result.returncode}: {first_line}\n{tail}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('files', nargs='*', help='Markdown files (default: README.md, docs/*.md)')
    parser.add_argument('--links-only', action='store_true', help='check the links only')
    parser.add_argument('--list', action='store_true',
                        help='list the runnable commands without running them')
    parser.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT,
                        help=f'seconds per command (default {DEFAULT_TIMEOUT})')
    args = parser.parse_args(argv)
    paths = [osp.abspath(p) for p in args.files] or default_files()
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        print(f'error: no such file: {", ".join(missing)}', file=sys.stderr)
        return 2
    commands = unique([c for p in paths for c in runnable_commands(p)])
    if args.list:
        for command in commands:
            print(f'{osp.relpath(command.path, REPO)}:{command.line}: [{command.language}] '
                  f'{command.text.strip().splitlines()[0]}')
        return 0
    problems = check_links(paths)
    print(f'links: {len(paths)} files, {len(problems)} broken')
    if not args.links_only:
        failed = 0
        for command in commands:
            start = time.monotonic()
            problem = run_command(command, args.timeout)
            print(f'{osp.relpath(command.path, REPO)}:{command.line}: '
                  f'{"FAILED" if problem else "ok"} ({time.monotonic() - start:.1f} s) '
                  f'{command.text.strip().splitlines()[0]}', flush=True)
            if problem:
                problems.append(problem)
                failed += 1
        print(f'commands: {len(commands)} run, {failed} failed')
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
