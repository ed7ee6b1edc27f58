"""`manage.py preview_course DIR`: an author's live preview of a course folder, served straight from disk.

No import and no database: the course is read with `load_course` on every save (watch.py), pages are rendered
from the `CourseSpec` with the preview templates (pages.py), and a small threaded WSGI server on the loopback
interface serves them with the site's static files and the course's assets (app.py, server.py).
"""
