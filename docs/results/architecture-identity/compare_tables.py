import csv,sys,re,os
a,b=sys.argv[1],sys.argv[2]
def load(p):
    rows=list(csv.reader(open(p)))
    h=rows[0]
    keep=[i for i,c in enumerate(h) if not re.search(r'(^|\s)(s|seconds|time|wall)(\s|$)|\bs\)|seconds|wall|time', c.strip())]
    return [[r[i] for i in keep if i < len(r)] for r in rows]
ok=True
for f in sorted(os.listdir(a)):
    if not f.endswith('.csv'): continue
    x=load(os.path.join(a,f)); y=load(os.path.join(b,f))
    if x!=y:
        ok=False; print('DIFF',f)
        for r1,r2 in zip(x,y):
            if r1!=r2: print(' ',r1,'\n ',r2)
    else: print('same',f, len(x)-1,'rows', 'cols', x[0])
print('ALL SAME' if ok else 'DIFFERENCES')
