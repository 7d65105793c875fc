"""Reading a site's data: label tables, class folders, DICOM and image decoding, records, patients, partitions, phantoms, the preprocessing cache and the site check."""
