# raft/: see DESIGN.md §1. Sources, libraries and tests are listed here.
