from sinreq.cli import run

run()
