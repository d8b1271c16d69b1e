from utils.cli import run_main
from utils.compare import main

run_main(main)
