"""Hand-made PDFs for bad-input tests: written byte by byte, so each flaw is exactly the one named."""

from __future__ import annotations


def _pdf(objects: list[str]) -> bytes:
    """A PDF with a correct xref table around `objects` (object i+1 = objects[i])."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def text_pdf(text: str = "Hello world. This is a small test document about testing.") -> bytes:
    """One page showing `text` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
    return _pdf(
        [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def cyclic_page_tree_pdf() -> bytes:
    """A page tree whose /Kids point back at an ancestor: naive walkers never stop."""
    return _pdf(
        [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 2 >>",
            "<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 4 0 R] /Count 2 >>",
            "<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] >>",
        ]
    )


def misaligned_xref_pdf() -> bytes:
    """`text_pdf` with every xref offset two bytes off: readable, but pypdf warns per object."""
    data = text_pdf()
    start, end = data.index(b"xref\n"), data.index(b"trailer")
    lines = data[start:end].decode().splitlines()
    shifted = [f"{int(line[:10]) + 2:010d}{line[10:]}" for line in lines[3:]]
    return data[:start] + ("\n".join(lines[:3] + shifted) + "\n").encode() + data[end:]
