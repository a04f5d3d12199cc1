"""The field's data formats: MXNet RecordIO training sets and insightface verification packs, without MXNet.

Modules: `recordio` (records, parts, index), `recset` (a training set's files and layout), `packs` (verification
packs, read by a restricted unpickler), `images` (an encoded image's size and quality, undecoded),
`importing` and `exporting` (into and out of a face cache).
"""
