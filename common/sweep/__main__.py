from common.cli import run
from common.sweep.cli import main

run(main)
