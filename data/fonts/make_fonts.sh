#!/bin/sh
# Rebuild data/fonts/*.ttf: digit-only subsets (U+0030-0039, plus space) of open-licensed fonts
# installed from Debian packages. Needs: apt-get install the packages in LICENSES.md and
# `pip install fonttools`. The subsets are a few KB each, so the binary embeds all of them.
set -eu
cd "$(dirname "$0")"
F=/usr/share/fonts
while read -r src name; do
  [ -z "$src" ] && continue
  pyftsubset "$F/$src" --unicodes=U+0020,U+0030-0039 --layout-features='' \
    --no-hinting --desubroutinize --output-file="$name.ttf"
done <<'LIST'
truetype/dejavu/DejaVuSans.ttf DejaVuSans
truetype/dejavu/DejaVuSans-Bold.ttf DejaVuSans-Bold
truetype/dejavu/DejaVuSans-ExtraLight.ttf DejaVuSans-ExtraLight
truetype/dejavu/DejaVuSansCondensed-Bold.ttf DejaVuSansCondensed-Bold
truetype/dejavu/DejaVuSerif.ttf DejaVuSerif
truetype/dejavu/DejaVuSerifCondensed-Bold.ttf DejaVuSerifCondensed-Bold
truetype/dejavu/DejaVuSansMono.ttf DejaVuSansMono
truetype/liberation/LiberationSans-Regular.ttf LiberationSans-Regular
truetype/liberation/LiberationSans-Bold.ttf LiberationSans-Bold
truetype/liberation/LiberationSansNarrow-Regular.ttf LiberationSansNarrow-Regular
truetype/liberation/LiberationSansNarrow-Bold.ttf LiberationSansNarrow-Bold
truetype/liberation/LiberationSerif-Regular.ttf LiberationSerif-Regular
truetype/liberation/LiberationSerif-Bold.ttf LiberationSerif-Bold
truetype/liberation/LiberationMono-Regular.ttf LiberationMono-Regular
truetype/freefont/FreeSans.ttf FreeSans
truetype/freefont/FreeSansBold.ttf FreeSansBold
truetype/freefont/FreeSerif.ttf FreeSerif
truetype/freefont/FreeSerifBold.ttf FreeSerifBold
truetype/freefont/FreeMonoBold.ttf FreeMonoBold
truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf Roboto-Regular
truetype/roboto/unhinted/RobotoTTF/Roboto-Black.ttf Roboto-Black
truetype/roboto/unhinted/RobotoTTF/Roboto-Thin.ttf Roboto-Thin
truetype/roboto/unhinted/RobotoCondensed-Bold.ttf RobotoCondensed-Bold
truetype/roboto/unhinted/RobotoCondensed-Regular.ttf RobotoCondensed-Regular
truetype/croscore/Arimo-Bold.ttf Arimo-Bold
truetype/croscore/Tinos-Regular.ttf Tinos-Regular
truetype/croscore/Cousine-Bold.ttf Cousine-Bold
truetype/crosextra/Carlito-Regular.ttf Carlito-Regular
opentype/cantarell/Cantarell-Regular.otf Cantarell-Regular
opentype/cantarell/Cantarell-ExtraBold.otf Cantarell-ExtraBold
opentype/comic-neue/ComicNeue-Regular.otf ComicNeue-Regular
opentype/comic-neue/ComicNeue-Bold.otf ComicNeue-Bold
opentype/league-spartan/LeagueSpartan-Regular.otf LeagueSpartan-Regular
opentype/league-spartan/LeagueSpartan-Black.otf LeagueSpartan-Black
opentype/bebas-neue/BebasNeue-Regular.otf BebasNeue-Regular
opentype/bebas-neue/BebasNeue-Bold.otf BebasNeue-Bold
fonts-go/Go-Regular.ttf Go-Regular
fonts-go/Go-Bold.ttf Go-Bold
fonts-go/Go-Mono.ttf Go-Mono
truetype/gentium/Gentium-R.ttf Gentium-R
truetype/hack/Hack-Bold.ttf Hack-Bold
truetype/quicksand/Quicksand-Bold.ttf Quicksand-Bold
truetype/quicksand/Quicksand-Light.ttf Quicksand-Light
opentype/dancingscript/DancingScript-Regular.otf DancingScript-Regular
opentype/dancingscript/DancingScript-Bold.otf DancingScript-Bold
truetype/fonts-oldstandard/OldStandard-Regular.ttf OldStandard-Regular
truetype/fonts-oldstandard/OldStandard-Bold.ttf OldStandard-Bold
opentype/cabin/Cabin-Regular.otf Cabin-Regular
opentype/cabin/Cabin-Bold.otf Cabin-Bold
truetype/comfortaa/Comfortaa-Bold.ttf Comfortaa-Bold
opentype/yanone-kaffeesatz/YanoneKaffeesatz-Regular.otf YanoneKaffeesatz-Regular
opentype/yanone-kaffeesatz/YanoneKaffeesatz-Bold.otf YanoneKaffeesatz-Bold
opentype/linux-libertine/LinLibertine_R.otf LinLibertine_R
opentype/linux-libertine/LinLibertine_RB.otf LinLibertine_RB
opentype/linux-libertine/LinBiolinum_RB.otf LinBiolinum_RB
truetype/open-sans/OpenSans-Regular.ttf OpenSans-Regular
truetype/open-sans/OpenSans-ExtraBold.ttf OpenSans-ExtraBold
truetype/open-sans/OpenSans-CondBold.ttf OpenSans-CondBold
truetype/adf/GilliusADF-BoldCond.otf GilliusADF-BoldCond
truetype/adf/UniversalisADFStd-Bold.otf UniversalisADFStd-Bold
truetype/adf/UniversalisADFStd-Cond.otf UniversalisADFStd-Cond
LIST
