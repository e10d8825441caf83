"""Small Sphinx fixes for the rendered book (loaded via _config.yml).

sphinx-thebe registers its inline configuration script once per read of the
environment, and Jupyter Book triggers that twice: every page then declared
``const THEBE_JS_URL`` twice, a JavaScript error in every reader's console.
This drops exact duplicates from each page's script list.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        # Inline scripts come back with filename None or '': compare the body.
        key = (getattr(script, "filename", None) or "", attributes.get("body"))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: the builder renders from this very list


def setup(app):
    # Early: html-page-context stops at the first handler that returns a
    # template name, so a late handler may never run. The duplicates are in
    # the list before any handler runs.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
