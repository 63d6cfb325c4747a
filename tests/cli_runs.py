"""Running the toolkit's command-line tools inside the test process, as `python -m ipt.<tool>` would."""

from ipt.cli import run_main


def in_process(main, capsys, *args):
    """(exit status, stdout, stderr) of a tool's main(ARGS), run in this process as run_main runs it."""
    try:
        run_main(lambda: main([str(a) for a in args]))
        code = 0
    except SystemExit as ended:
        code = ended.code
    out, err = capsys.readouterr()
    return code, out, err
