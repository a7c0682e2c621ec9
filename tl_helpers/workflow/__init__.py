"""Running chapters and building the book: notebook start/finish, run cards, seeding,
profiles, the papermill runner and the jupyter-book build. The lowest room (it may import
every other)."""
