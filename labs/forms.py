from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)]


class SubmissionForm(forms.Form):
    """The upload form on the lab page. Without JavaScript it is a plain multi-file input; the drag-and-drop
    script adds a `paths` value per file so folders keep their structure (browsers send only base names)."""

    files = MultipleFileField(
        label="Your files or a .zip",
        error_messages={"required": "Choose the files of your submission, or a .zip of them."},
    )

    def upload(self, paths: list[str]) -> list[tuple[str, object]]:
        files = self.cleaned_data["files"]
        if len(paths) != len(files):
            paths = [f.name for f in files]
        return list(zip(paths, files, strict=True))
