"""The documentation: README.md and docs/*.md.

Their relative links resolve, their runnable blocks (```bash runnable / ```python runnable,
docs/development.md) run, the README stays a front page, and docs/compat.md names every
upstream fix. ``tools/dev/check_docs.py`` does the checking; these tests run it and show that
it catches what it is meant to.
"""
import glob
import os.path as osp

import pytest

from helpers import REPO, load_tool

check_docs = load_tool('dev/check_docs')
COMMANDS = check_docs.unique([c for path in check_docs.default_files()
                              for c in check_docs.runnable_commands(path)])


def _where(command) -> str:
    return f'{osp.relpath(command.path, REPO)}:{command.line}'


def test_readme_is_a_front_page():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        lines = f.read().split('\n')
    assert len(lines) <= 300, f'README.md has {len(lines)} lines; move detail into docs/'
    # CI (.ci/run) runs this command; the README states it as it is.
    assert 'make test   # set up (first time only) and run the whole test suite' in lines
    for page in ('get_started', 'model_zoo', 'training', 'reliability', 'deploy', 'benchmark',
                 'generation', 'video_medical', 'compat', 'development', 'timm', 'tools'):
        assert f'(docs/{page}.md)' in '\n'.join(lines), f'README does not link docs/{page}.md'


def test_docs_index_lists_every_page():
    with open(osp.join(REPO, 'docs', 'README.md'), encoding='utf-8') as f:
        index = f.read()
    for path in glob.glob(osp.join(REPO, 'docs', '*.md')):
        name = osp.basename(path)
        if name != 'README.md':
            assert f'({name})' in index, f'docs/README.md does not list {name}'


def test_relative_links_resolve():
    problems = check_docs.check_links(check_docs.default_files())
    assert not problems, '\n'.join(map(str, problems))


def test_compat_page_names_every_fix():
    with open(osp.join(REPO, 'docs', 'compat.md'), encoding='utf-8') as f:
        page = f.read()
    modules = sorted(osp.splitext(osp.basename(p))[0]
                     for p in glob.glob(osp.join(REPO, 'emo_mm', 'compat', '*.py')))
    missing = [m for m in modules if m != '__init__' and f'`{m}`' not in page]
    assert modules and not missing, f'docs/compat.md does not describe {missing}'


def test_the_check_finds_broken_links_and_failing_commands(tmp_path):
    (tmp_path / 'other.md').write_text('# A heading\n\ntext\n')
    page = tmp_path / 'page.md'
    page.write_text('\n'.join([
        '# Page',                                      # 1
        '[fine](other.md) [fine too](other.md#a-heading) [web](https://example.org/x)',
        '[gone](missing.md)',                          # 3
        '[no such heading](other.md#b-heading) `[in code](nowhere.md)`',
        '',
        '```bash runnable',                            # 6
        '# a comment',
        'true',                                        # 8
        'echo one \\',                                 # 9
        '    two | grep -q "one two"',
        'exit 3',                                      # 11
        '```',
        '',
        '```bash',                                     # 14: not runnable
        'exit 4',
        '```',
        '````markdown',                                # 17: a runnable block shown as text
        '```bash runnable',
        'exit 5',
        '```',
        '````',
        '```python runnable',                          # 22
        'import sys',
        'sys.exit(0 if sys.version_info.major == 3 else 1)',
        '```',
    ]) + '\n')
    problems = check_docs.check_links([str(page)])
    assert [(p.line, p.message) for p in problems] == [
        (3, 'link to a missing file: missing.md'),
        (4, 'link to a missing heading: other.md#b-heading')]

    commands = check_docs.runnable_commands(str(page))
    assert [(c.line, c.language) for c in commands] == [
        (8, 'bash'), (9, 'bash'), (11, 'bash'), (23, 'python')]
    assert commands[1].text == 'echo one two | grep -q "one two"'
    results = [check_docs.run_command(c, timeout=60) for c in commands]
    assert [r is None for r in results] == [True, True, False, True]
    assert str(results[2]).startswith(f'{osp.relpath(str(page), REPO)}:11: exit status 3')


def test_the_check_reports_a_timeout(tmp_path):
    page = tmp_path / 'slow.md'
    page.write_text('```bash runnable\nsleep 30\n```\n')
    command, = check_docs.runnable_commands(str(page))
    problem = check_docs.run_command(command, timeout=1)
    assert problem is not None and problem.line == 2 and 'timed out after 1 s' in problem.message


def test_slugs_are_githubs():
    assert check_docs.slug('Non-finite losses, gradients and weights') == \
        'non-finite-losses-gradients-and-weights'
    assert check_docs.slug('Effective receptive field: tools/erf.py') == \
        'effective-receptive-field-toolserfpy'
    assert check_docs.slug('The `Predictor`') == 'the-predictor'


def test_repeated_commands_run_once(tmp_path):
    (tmp_path / 'a.md').write_text('```bash runnable\ntrue\ntrue \\\n\n```\n')
    (tmp_path / 'b.md').write_text('```bash runnable\ntrue\n```\n```python runnable\ntrue\n```\n')
    commands = check_docs.unique([c for name in ('a.md', 'b.md')
                                  for c in check_docs.runnable_commands(str(tmp_path / name))])
    assert [(osp.basename(c.path), c.line, c.language) for c in commands] == [
        ('a.md', 2, 'bash'), ('b.md', 5, 'python')]


def test_there_are_runnable_commands():
    """The marker is in use: a renamed marker would silently run nothing."""
    assert len(COMMANDS) >= 10
    assert {c.language for c in COMMANDS} == {'bash', 'python'}


@pytest.mark.slow
@pytest.mark.parametrize('command', COMMANDS, ids=_where)
def test_runnable_command(command):
    problem = check_docs.run_command(command, timeout=300)
    assert problem is None, str(problem)
